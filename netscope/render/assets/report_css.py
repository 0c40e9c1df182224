"""Styles of the HTML report. Every class starts with ``ns-`` so the notebook version cannot clash with Jupyter's."""

# Shared by the page and the notebook view: totals, shape flow, charts, badges.
COMMON_CSS = """
.ns-root{font:13px/1.45 -apple-system,"Segoe UI",Roboto,Helvetica,Arial,sans-serif;color:#1f2328}
.ns-root h2{font-size:15px;margin:18px 0 8px}
.ns-totals{display:grid;grid-template-columns:max-content max-content;gap:2px 18px;margin:0}
.ns-totals dt{color:#59636e}.ns-totals dd{margin:0;font-variant-numeric:tabular-nums;font-weight:600}
.ns-run{color:#59636e;margin:6px 0}
.ns-flow{display:flex;flex-wrap:wrap;align-items:center;gap:4px 2px;margin:6px 0}
.ns-step{display:inline-flex;flex-direction:column;align-items:center;padding:3px 7px;border:1px solid #d1d9e0;
 border-radius:6px;background:#f6f8fa}
.ns-step b{font-variant-numeric:tabular-nums}.ns-step small{color:#59636e;max-width:11em;overflow:hidden;
 text-overflow:ellipsis;white-space:nowrap}
.ns-step.ns-half{border-color:#0969da;background:#ddf4ff}
.ns-arrow{color:#818b98;padding:0 2px}.ns-stage{color:#0969da;font-weight:700;padding:0 3px}
.ns-more-steps{color:#59636e;font-style:italic}
.ns-charts{display:flex;flex-wrap:wrap;gap:8px 28px}
.ns-chart{margin:0}.ns-chart figcaption{font-weight:600;margin-bottom:3px}
.ns-chart svg{font:11px sans-serif;fill:#1f2328;display:block}
.ns-empty{color:#59636e}
.ns-badge{display:inline-block;padding:0 6px;border-radius:9px;font-size:11px;margin-right:3px;
 border:1px solid transparent;cursor:default;white-space:nowrap}
.ns-pass{background:#dafbe1;color:#116329}.ns-mismatch{background:#ffebe9;color:#a40e26}
.ns-warn{background:#fff8c5;color:#7d4e00}.ns-other{background:#eaeef2;color:#424a53}
.ns-names{background:#fbefff;color:#6e40c9}
table.ns-table{border-collapse:collapse;font-variant-numeric:tabular-nums}
.ns-table th,.ns-table td{padding:2px 8px;border-bottom:1px solid #eaeef2;text-align:left;white-space:nowrap}
.ns-table th{background:#f6f8fa;position:sticky;top:0;z-index:1}
.ns-table td.ns-num,.ns-table th.ns-num{text-align:right}
"""

PAGE_CSS = COMMON_CSS + """
body{margin:0;background:#fff}
.ns-page{max-width:1400px;margin:0 auto;padding:12px 20px 40px}
.ns-page h1{font-size:19px;margin:4px 0 2px}
.ns-cols{display:flex;flex-wrap:wrap;gap:10px 40px}
.ns-toolbar{display:flex;gap:8px;align-items:center;margin:8px 0;position:sticky;top:0;background:#fff;padding:6px 0;
 z-index:2}
.ns-toolbar input{font:inherit;padding:4px 8px;width:320px;border:1px solid #d1d9e0;border-radius:6px}
.ns-toolbar button{font:inherit;padding:3px 10px;border:1px solid #d1d9e0;border-radius:6px;background:#f6f8fa;
 cursor:pointer}
#ns-status{color:#59636e}
.ns-tree th{top:46px}
.ns-tree td.ns-name{font-family:ui-monospace,SFMono-Regular,Menlo,Consolas,monospace}
.ns-toggle{display:inline-block;width:16px;border:0;background:none;padding:0;cursor:pointer;color:#59636e;
 font:inherit;text-align:center}
.ns-leaf{display:inline-block;width:16px}
.ns-tree tr.ns-hit td{background:#fff8c5}
.ns-tree tr:hover td{background:#f6f8fa}
.ns-tree tr.ns-more td{color:#0969da;cursor:pointer;font-style:italic}
.ns-findings h3{font-size:13px;margin:10px 0 2px}.ns-findings .ns-fix{margin:0 0 0 22px}.ns-findings ul{margin:2px 0}.ns-findings li{margin:2px 0}.ns-findings code{background:#f6f8fa;padding:0 3px;border-radius:3px}
.ns-link{border:0;background:none;color:#0969da;cursor:pointer;padding:0;font:inherit;text-decoration:underline}
.ns-fix{color:#59636e}
"""

NOTEBOOK_CSS = COMMON_CSS + """
.ns-nb{max-height:none}.ns-nb .ns-table{margin-top:4px}.ns-nb .ns-note{color:#59636e}
"""
