"""Styles of the HTML report. Every class starts with ``ns-`` so the notebook version cannot clash with Jupyter's.

Colours are custom properties: inside Jupyter they take the theme's own variables (``--jp-*``), elsewhere
the light or dark fallback that ``prefers-color-scheme`` picks. Table rules carry enough specificity
(``.ns-root .ns-table tbody tr:nth-child(n) td``) that Jupyter's output-area table rules cannot override them.
"""

# Shared by the page and the notebook view: totals, shape flow, charts, badges, tables.
COMMON_CSS = """
.ns-root{--ns-fg:var(--jp-content-font-color1,#1f2328);--ns-muted:var(--jp-content-font-color2,#59636e);
 --ns-bg:var(--jp-layout-color0,#ffffff);--ns-bg2:var(--jp-layout-color2,#f6f8fa);
 --ns-border:var(--jp-border-color2,#d1d9e0);--ns-link:var(--jp-content-link-color,#0969da);
 --ns-hit:rgba(212,167,44,.25);--ns-pass:#116329;--ns-bad:#a40e26;--ns-warn:#7d4e00;--ns-info:#424a53;--ns-name:#6e40c9;
 color-scheme:light;
 font:13px/1.45 -apple-system,"Segoe UI",Roboto,Helvetica,Arial,sans-serif;color:var(--ns-fg);background:var(--ns-bg)}
@media (prefers-color-scheme: dark){
 .ns-root{--ns-fg:var(--jp-content-font-color1,#e6edf3);--ns-muted:var(--jp-content-font-color2,#9198a1);
  --ns-bg:var(--jp-layout-color0,#0d1117);--ns-bg2:var(--jp-layout-color2,#161b22);
  --ns-border:var(--jp-border-color2,#3d444d);--ns-link:var(--jp-content-link-color,#4493f8);
  --ns-pass:#56d364;--ns-bad:#ff7b72;--ns-warn:#e3b341;--ns-info:#b7bdc8;--ns-name:#d2a8ff;color-scheme:dark}}
.ns-root h2{font-size:15px;margin:18px 0 8px}.ns-root h3{font-size:13px;margin:10px 0 2px}
.ns-root .ns-headline{font-weight:700;font-size:14px;margin:2px 0}
.ns-totals{display:grid;grid-template-columns:max-content max-content;gap:2px 18px;margin:0}
.ns-totals dt{color:var(--ns-muted)}.ns-totals dd{margin:0;font-variant-numeric:tabular-nums;font-weight:600}
.ns-run{color:var(--ns-muted);margin:6px 0}
.ns-run-notes{color:var(--ns-muted);margin:4px 0;padding-left:18px}.ns-run-notes li{white-space:pre-line}
.ns-failure{border:1px solid var(--ns-bad);border-radius:6px;padding:6px 10px;margin:6px 0}
.ns-failure strong{color:var(--ns-bad)}.ns-failure .ns-error{white-space:pre-wrap}
.ns-flow{display:flex;flex-wrap:wrap;align-items:center;gap:4px 2px;margin:6px 0}
.ns-step{display:inline-flex;flex-direction:column;align-items:center;padding:3px 7px;border:1px solid var(--ns-border);
 border-radius:6px;background:var(--ns-bg2)}
.ns-step b{font-variant-numeric:tabular-nums}.ns-step small{color:var(--ns-muted);max-width:14em;overflow:hidden;
 text-overflow:ellipsis;white-space:nowrap}
.ns-step.ns-half{border-color:var(--ns-link)}
.ns-step.ns-branch{border-style:dashed}
.ns-step i.ns-join{font-style:normal;font-size:11px;color:var(--ns-link);white-space:nowrap}
.ns-arrow{color:var(--ns-muted);padding:0 2px}.ns-stage{color:var(--ns-link);font-weight:700;padding:0 3px}
.ns-more-steps{color:var(--ns-muted);font-style:italic}
.ns-flow-row{display:flex;flex-wrap:wrap;align-items:center;gap:4px 2px;margin:2px 0}
.ns-flow-row>.ns-flow-name{color:var(--ns-muted);min-width:7em;font-size:12px}
.ns-charts{display:flex;flex-wrap:wrap;gap:8px 28px}
.ns-chart{margin:0}.ns-chart figcaption{font-weight:600;margin-bottom:3px}
.ns-chart svg{font:11px sans-serif;display:block}.ns-chart svg text{fill:var(--ns-fg)}
line.ns-peak{stroke:var(--ns-fg)}rect.ns-peak{fill:var(--ns-fg)}
.ns-empty{color:var(--ns-muted)}
.ns-badge{display:inline-block;padding:0 6px;border-radius:9px;font-size:11px;margin-right:3px;
 border:1px solid currentColor;cursor:default;white-space:nowrap}
.ns-pass{color:var(--ns-pass)}.ns-mismatch,.ns-sev-error{color:var(--ns-bad)}
.ns-warn,.ns-sev-warning{color:var(--ns-warn)}.ns-other,.ns-info,.ns-sev-info{color:var(--ns-info)}
.ns-names{color:var(--ns-name)}.ns-merge{color:var(--ns-muted)}
.ns-root table.ns-table{border-collapse:collapse;font-variant-numeric:tabular-nums;margin:0;table-layout:auto;
 border:0;color:var(--ns-fg);font-size:13px}
.ns-root .ns-table tbody tr:nth-child(n),.ns-root .ns-table thead tr:nth-child(n){background:transparent}
.ns-root .ns-table tbody tr:nth-child(n) td,.ns-root .ns-table thead tr:nth-child(n) th{padding:2px 8px;
 border:0;border-bottom:1px solid var(--ns-border);text-align:left;white-space:nowrap;line-height:1.45;
 vertical-align:middle;max-width:none;color:var(--ns-fg)}
.ns-root .ns-table thead tr:nth-child(n) th{background:var(--ns-bg2);position:sticky;top:0;z-index:1;font-weight:600}
.ns-root .ns-table tbody tr:nth-child(n) td.ns-num,.ns-root .ns-table thead tr:nth-child(n) th.ns-num{text-align:right}
.ns-root .ns-table tbody tr.ns-fold td{font-style:italic;color:var(--ns-muted)}
.ns-root details>summary{cursor:pointer;font-weight:600;margin:6px 0 2px}
.ns-root code{background:var(--ns-bg2);padding:0 3px;border-radius:3px}
"""

PAGE_CSS = COMMON_CSS + """
body{margin:0;background:var(--ns-bg,#fff)}
html{background:#fff}
@media (prefers-color-scheme: dark){html{background:#0d1117}}
.ns-page{max-width:1400px;margin:0 auto;padding:12px 20px 40px}
.ns-page h1{font-size:19px;margin:4px 0 2px}
.ns-cols{display:flex;flex-wrap:wrap;gap:10px 40px}
.ns-toolbar{display:flex;flex-wrap:wrap;gap:8px;align-items:center;margin:8px 0;padding:6px 0}
.ns-toolbar input,.ns-toolbar button,.ns-sort,.ns-more-btn,.ns-fold-btn{font:inherit;color:var(--ns-fg)}
.ns-toolbar input{padding:4px 8px;width:320px;max-width:100%;border:1px solid var(--ns-border);border-radius:6px;
 background:var(--ns-bg)}
.ns-toolbar button{padding:3px 10px;border:1px solid var(--ns-border);border-radius:6px;background:var(--ns-bg2);
 cursor:pointer}
#ns-status{color:var(--ns-muted)}
.ns-scroll{overflow:auto;max-height:80vh;max-width:100%;border:1px solid var(--ns-border);border-radius:6px}
.ns-tree td.ns-name{font-family:ui-monospace,SFMono-Regular,Menlo,Consolas,monospace}
.ns-toggle{display:inline-block;width:18px;border:0;background:none;padding:0;cursor:pointer;color:var(--ns-muted);
 font:inherit;text-align:center}
.ns-leaf{display:inline-block;width:18px}
.ns-root .ns-tree tbody tr.ns-hit td{background:var(--ns-hit)}
.ns-root .ns-tree tbody tr.ns-target td{outline:2px solid var(--ns-link);outline-offset:-2px}
.ns-root .ns-tree tbody tr:hover td{background:var(--ns-bg2)}
.ns-more-btn,.ns-fold-btn{border:0;background:none;color:var(--ns-link);cursor:pointer;padding:0;font-style:italic;
 text-decoration:underline}
.ns-sort{border:0;background:none;padding:0;cursor:pointer;font-weight:600}
th[aria-sort=descending] .ns-sort::after{content:" \\25BE"}
.ns-findings .ns-fix{margin:0 0 0 22px}.ns-findings ul{margin:2px 0}.ns-findings li{margin:2px 0}
.ns-heaviest ol{margin:2px 0;padding-left:22px}
.ns-link{border:0;background:none;color:var(--ns-link);cursor:pointer;padding:0;font:inherit;text-decoration:underline}
.ns-fix{color:var(--ns-muted)}
:focus-visible{outline:2px solid var(--ns-link);outline-offset:1px}
@media print{
 .ns-toolbar,.ns-toggle,.ns-more-btn,.ns-fold-btn,.ns-link::after{display:none}
 .ns-root{--ns-fg:#000;--ns-muted:#333;--ns-bg:#fff;--ns-bg2:#f0f0f0;--ns-border:#bbb;--ns-link:#000;color-scheme:light}
 html,body{background:#fff}
 .ns-page{max-width:none;padding:0}
 .ns-scroll{overflow:visible;max-height:none;border:0}
 .ns-root table.ns-table{font-size:9px;width:100%}
 .ns-root .ns-table tbody tr:nth-child(n) td,.ns-root .ns-table thead tr:nth-child(n) th{white-space:normal;
  word-break:break-all;padding:1px 3px}
 .ns-root .ns-table thead tr:nth-child(n) th{position:static}
 .ns-root .ns-tree tbody tr.ns-hit td,.ns-root .ns-tree tbody tr:hover td{background:none}
 section{break-inside:auto}.ns-chart{break-inside:avoid}
}
"""

NOTEBOOK_CSS = COMMON_CSS + """
.ns-root.ns-nb{padding:4px 2px;max-width:100%;overflow-x:auto}
.ns-root.ns-nb .ns-table{margin-top:4px}.ns-root.ns-nb .ns-note{color:var(--ns-muted);margin:4px 0}
"""
