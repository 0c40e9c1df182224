"""The HTML report's script: a lazily rendered, collapsible module tree with search. Vanilla JS, no network."""

# Reads the JSON payload of netscope.render.html_data (element #ns-data). Rows of a subtree are built only
# when it is expanded, and at most CHUNK children per node at a time, so a 12,000-module model stays usable.
PAGE_JS = r"""
(function () {
  "use strict";
  var CHUNK = 200, MAX_MATCHES = 500, COLUMNS = 7;
  var data = JSON.parse(document.getElementById("ns-data").textContent);
  var F = {};
  data.fields.forEach(function (f, i) { F[f] = i; });
  var rows = data.rows, n = rows.length;
  var kids = new Array(n), depth = new Int32Array(n), full = new Array(n), hay = new Array(n);
  var i;
  for (i = 0; i < n; i++) kids[i] = [];
  for (i = 0; i < n; i++) {
    var r = rows[i], p = r[F.parent], nm = r[F.name];
    if (p >= 0) { kids[p].push(i); depth[i] = depth[p] + 1; }
    full[i] = Array.isArray(nm) ? nm[0] : (p >= 0 && full[p] ? full[p] + "." + nm : nm);
    hay[i] = (full[i] + " " + data.classes[r[F["class"]]]).toLowerCase();
  }

  var state = { expanded: new Set([0]), keep: null, hits: null, shown: new Map() };
  var saved = null;
  var body = document.getElementById("ns-tree-body");
  var search = document.getElementById("ns-search");
  var status = document.getElementById("ns-status");

  function commas(v) { return Number(v).toLocaleString("en-US"); }
  function si(v) {
    var units = [[1e12, "T"], [1e9, "G"], [1e6, "M"], [1e3, "k"]];
    for (var k = 0; k < units.length; k++) {
      if (Math.abs(v) >= units[k][0]) return (v / units[k][0]).toFixed(2) + " " + units[k][1];
    }
    return String(v);
  }
  function visibleKids(i) {
    var k = kids[i];
    return state.keep ? k.filter(function (c) { return state.keep.has(c); }) : k;
  }
  function label(i) {
    var nm = rows[i][F.name], call = rows[i][F.call];
    var text = i === 0 ? "(root)" : (Array.isArray(nm) ? nm[0] : nm);
    return call > 1 ? text + " (call " + call + ")" : text;
  }
  function el(tag, cls, text, title) {
    var e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text !== undefined) e.textContent = text;
    if (title) e.title = title;
    return e;
  }
  function notes(i) {
    var td = el("td", "ns-notes"), kind = rows[i][F.check], named = data.names[i];
    if (kind >= 0) {
      var check = data.checks[kind], st = check[0], problem = check[1], warnings = check[2], levels = check[3] || [];
      var cls = st === "pass" ? "ns-pass" : (/mismatch|fail|error/i.test(st) ? "ns-mismatch" : "ns-other");
      td.appendChild(el("span", "ns-badge " + cls, st, problem || "formula check passed"));
      if (warnings.length) {
        var info = levels.every(function (l) { return l === "info"; });
        td.appendChild(el("span", "ns-badge " + (info ? "ns-other" : "ns-warn"), warnings.length + (info ? " info" : " warn"),
                          warnings.map(function (w, k) { return (levels[k] || "warning") + ": " + w; }).join("\n")));
      }
    }
    if (named) {
      var text = named.map(function (f) {
        var message = f[1] >= 0 ? data.texts[f[1]] : "(message left out of this report; run netscope names)";
        return data.texts[f[0]] + ": " + message + (data.texts[f[2]] ? "\nFix: " + data.texts[f[2]] : "");
      });
      td.appendChild(el("span", "ns-badge ns-names", named.length + " naming", text.join("\n\n")));
    }
    return td;
  }
  function makeRow(i) {
    var r = rows[i], d = depth[i], tr = el("tr", state.hits && state.hits.has(i) ? "ns-hit" : "");
    tr.dataset.i = i;
    tr.dataset.d = d;
    var name = el("td", "ns-name");
    name.style.paddingLeft = (6 + 14 * d) + "px";
    var count = visibleKids(i).length;
    if (count) {
      var open = state.expanded.has(i);
      var b = el("button", "ns-toggle", open ? "\u25BE" : "\u25B8", count + " children");
      b.type = "button";
      b.setAttribute("aria-expanded", String(open));
      name.appendChild(b);
    } else {
      name.appendChild(el("span", "ns-leaf"));
    }
    name.appendChild(el("span", "ns-label", label(i), full[i] || "(root)"));
    tr.appendChild(name);
    tr.appendChild(el("td", "", data.classes[r[F["class"]]]));
    tr.appendChild(el("td", "", data.shapes[r[F.input]]));
    tr.appendChild(el("td", "", data.shapes[r[F.output]]));
    tr.appendChild(el("td", "ns-num", commas(r[F.params]), "own: " + commas(r[F.own_params])));
    tr.appendChild(el("td", "ns-num", si(r[F.macs]), commas(r[F.macs]) + " (own: " + commas(r[F.own_macs]) + ")"));
    tr.appendChild(notes(i));
    return tr;
  }
  function moreRow(i, left) {
    var tr = el("tr", "ns-more"), td = el("td", "", "show " + Math.min(left, CHUNK) + " more (" + left + " not shown)");
    tr.dataset.more = i;
    tr.dataset.d = depth[i] + 1;
    td.colSpan = COLUMNS;
    td.style.paddingLeft = (22 + 14 * (depth[i] + 1)) + "px";
    tr.appendChild(td);
    return tr;
  }
  function emitChildren(i, out, from) {
    var k = visibleKids(i), limit = state.shown.get(i) || CHUNK;
    for (var j = from; j < Math.min(k.length, limit); j++) emit(k[j], out);
    if (k.length > limit) out.appendChild(moreRow(i, k.length - limit));
  }
  function emit(i, out) {
    out.appendChild(makeRow(i));
    if (state.expanded.has(i)) emitChildren(i, out, 0);
  }
  function render() {
    var f = document.createDocumentFragment();
    if (n && (!state.keep || state.keep.has(0))) emit(0, f);
    body.textContent = "";
    body.appendChild(f);
  }
  function toggle(tr) {
    var i = Number(tr.dataset.i), btn = tr.querySelector(".ns-toggle");
    if (!btn) return;
    if (state.expanded.has(i)) {
      state.expanded.delete(i);
      var d = Number(tr.dataset.d);
      while (tr.nextSibling && Number(tr.nextSibling.dataset.d) > d) body.removeChild(tr.nextSibling);
    } else {
      state.expanded.add(i);
      var f = document.createDocumentFragment();
      emitChildren(i, f, 0);
      body.insertBefore(f, tr.nextSibling);
    }
    var open = state.expanded.has(i);
    btn.textContent = open ? "\u25BE" : "\u25B8";
    btn.setAttribute("aria-expanded", String(open));
  }
  function showMore(tr) {
    var i = Number(tr.dataset.more), before = state.shown.get(i) || CHUNK;
    state.shown.set(i, before + CHUNK);
    var f = document.createDocumentFragment();
    emitChildren(i, f, before);
    body.replaceChild(f, tr);
  }
  function applySearch() {
    var q = search.value.trim().toLowerCase();
    state.shown = new Map();
    if (!q) {
      if (saved) { state.expanded = saved; saved = null; }
      state.keep = null;
      state.hits = null;
      status.textContent = n.toLocaleString("en-US") + " layers";
      render();
      return;
    }
    if (!saved) saved = state.expanded;
    var hits = new Set(), keep = new Set(), open = new Set(), total = 0;
    for (var i = 0; i < n; i++) {
      if (hay[i].indexOf(q) < 0) continue;
      total++;
      if (hits.size >= MAX_MATCHES) continue;
      hits.add(i);
      keep.add(i);
      for (var p = rows[i][F.parent]; p >= 0 && !open.has(p); p = rows[p][F.parent]) { open.add(p); keep.add(p); }
    }
    state.keep = keep;
    state.hits = hits;
    state.expanded = open;
    status.textContent = total.toLocaleString("en-US") + " of " + n.toLocaleString("en-US") + " layers match" +
      (total > MAX_MATCHES ? " (showing the first " + MAX_MATCHES + ")" : "");
    render();
  }
  function expandAll() {
    state.expanded = new Set();
    for (var i = 0; i < n; i++) if (visibleKids(i).length) state.expanded.add(i);
    render();
  }
  function collapseAll() {
    state.expanded = new Set(state.keep ? [] : [0]);
    render();
  }

  body.addEventListener("click", function (ev) {
    var tr = ev.target.closest("tr");
    if (!tr) return;
    if (tr.dataset.more !== undefined) showMore(tr);
    else if (ev.target.closest(".ns-toggle") || ev.target.closest(".ns-label")) toggle(tr);
  });
  search.addEventListener("input", applySearch);
  search.addEventListener("keydown", function (ev) {
    if (ev.key === "Escape") { search.value = ""; applySearch(); }
  });
  document.getElementById("ns-expand").addEventListener("click", expandAll);
  document.getElementById("ns-collapse").addEventListener("click", collapseAll);
  Array.prototype.forEach.call(document.querySelectorAll("[data-find]"), function (link) {
    link.addEventListener("click", function () {
      search.value = link.getAttribute("data-find");
      applySearch();
      search.scrollIntoView({ block: "start" });
    });
  });
  applySearch();
  document.body.setAttribute("data-ready", "1");
})();
"""
