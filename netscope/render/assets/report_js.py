"""The HTML report's script: a lazily rendered, collapsible module tree with search. Vanilla JS, no network."""

# Reads the JSON payload of netscope.render.html_data (element #ns-data). Rows of a subtree are built only
# when it is expanded, at most CHUNK children per node at a time (a focusable "show more" button pages on),
# and runs of identical blocks are folded into one row with a button that unfolds them, so a 12,000-module
# model stays quick. The table is a treegrid: rows carry aria-level / aria-expanded, toggles are named.
PAGE_JS = r"""
(function () {
  "use strict";
  var CHUNK = 200;
  var data = JSON.parse(document.getElementById("ns-data").textContent);
  var F = {};
  data.fields.forEach(function (f, i) { F[f] = i; });
  var COLUMNS = data.columns.length;
  var rows = data.rows, n = rows.length;
  var kids = new Array(n), depth = new Int32Array(n), full = new Array(n), hay = new Array(n);
  var i;
  for (i = 0; i < n; i++) kids[i] = [];
  for (i = 0; i < n; i++) {
    var r = rows[i], p = r[F.parent], nm = r[F.name];
    if (p >= 0) { kids[p].push(i); depth[i] = depth[p] + 1; }
    full[i] = Array.isArray(nm) ? nm[0] : (p >= 0 && full[p] ? full[p] + "." + nm : nm);
  }
  // folds: the second call of a run stands for the rest until the run is unfolded
  var foldAt = new Map(), memberFold = new Map();
  data.folds.forEach(function (f, k) {
    foldAt.set(f[1][0], k);
    f[1].forEach(function (m) { memberFold.set(m, k); });
  });

  var state = { expanded: new Set([0]), keep: null, hits: null, shown: new Map(), unfolded: new Set(), sort: null };
  var saved = null;
  var body = document.getElementById("ns-tree-body");
  var search = document.getElementById("ns-search");
  var status = document.getElementById("ns-status");

  var NOT_RECORDED = "(not recorded)";
  // counts past 2**53 come as decimal strings (html_data.exact): BigInt keeps every digit
  function commas(v) { return (typeof v === "number" ? v : BigInt(v)).toLocaleString("en-US"); }
  function counted(v, noun) { return commas(v) + " " + noun + (v === 1 ? "" : "s"); }
  function si(v) {
    v = Number(v);
    var units = [[1e12, "T"], [1e9, "G"], [1e6, "M"], [1e3, "k"]];
    for (var k = 0; k < units.length; k++) {
      if (Math.abs(v) >= units[k][0]) return (v / units[k][0]).toFixed(2) + " " + units[k][1];
    }
    return String(v);
  }
  function haystack(i) {
    if (hay[i] === undefined) {  // the name, "(call 2)" on a later call, and the class
      var call = rows[i][F.call];
      hay[i] = (full[i] + (call > 1 ? " (call " + call + ")" : "") + " " + data.classes[rows[i][F["class"]]]).toLowerCase();
    }
    return hay[i];
  }
  function visibleKids(i) {
    var k = kids[i];
    if (state.keep) k = k.filter(function (c) { return state.keep.has(c); });
    if (state.sort) {
      var f = F[state.sort];
      k = k.slice().sort(function (a, b) { return rows[b][f] - rows[a][f] || a - b; });
    }
    return k;
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
  function callName(j) {  // a call as the dataflow names it: -1 is the model's input
    if (j < 0) return "the model's input";
    return (full[j] || "(root)") + (rows[j][F.call] > 1 ? " (call " + rows[j][F.call] + ")" : "");
  }
  function fedBy(i) {
    var from = rows[i][F.inputs_from];
    return from.length ? "from " + from.map(function (d) { return callName(i - d); }).join(", ") : "";
  }
  function notes(i) {
    var td = el("td", "ns-notes"), kind = rows[i][F.check], named = data.names[i];
    if (kind >= 0) {
      var check = data.checks[kind], st = check[0], problem = check[1], warnings = check[2], infos = check[3];
      var cls = st === "pass" ? "ns-pass" : (/mismatch|fail|error|invalid/i.test(st) ? "ns-mismatch" : "ns-other");
      td.appendChild(el("span", "ns-badge " + cls, st, problem || "formula check passed"));
      if (warnings.length) td.appendChild(el("span", "ns-badge ns-warn", warnings.length + " warn", warnings.join("\n")));
      if (infos.length) td.appendChild(el("span", "ns-badge ns-info", infos.length + (infos.length === 1 ? " note" : " notes"), infos.join("\n")));
    }
    var joins = data.merges && data.merges[i];
    if (joins) {  // operators of this call's own code that joined several calls' outputs (a skip, a concat)
      td.appendChild(el("span", "ns-badge ns-merge",
        "\u2295 " + (joins.length === 1 ? data.texts[joins[0][0]] : joins.length + " merges"),
        joins.map(function (m) { return data.texts[m[0]] + ": " + m[1].map(callName).join(" + "); }).join("\n")));
    }
    if (named) {
      var text = named.map(function (f) {
        var message = f[1] >= 0 ? data.texts[f[1]] : "(message left out of this report; run netscope names)";
        return data.texts[f[0]] + ": " + message + (data.texts[f[2]] ? "\nFix: " + data.texts[f[2]] : "");
      });
      var sev = data.name_severity[i] || "warning";
      td.appendChild(el("span", "ns-badge ns-names ns-sev-" + sev, named.length + " naming", text.join("\n\n")));
    }
    return td;
  }
  function makeRow(i) {
    var r = rows[i], d = depth[i], tr = el("tr", state.hits && state.hits.has(i) ? "ns-hit" : "");
    tr.dataset.i = i;
    tr.dataset.d = d;
    tr.id = "ns-row-" + i;
    tr.setAttribute("aria-level", String(d + 1));
    var name = el("td", "ns-name");
    name.style.paddingLeft = (6 + 14 * d) + "px";
    var count = visibleKids(i).length;
    if (count) {
      var open = state.expanded.has(i);
      var b = el("button", "ns-toggle", open ? "\u25BE" : "\u25B8");
      b.type = "button";
      b.setAttribute("aria-label", (open ? "Collapse " : "Expand ") + (full[i] || "(root)") + " (" + count + " children)");
      b.setAttribute("aria-expanded", String(open));
      tr.setAttribute("aria-expanded", String(open));
      name.appendChild(b);
    } else {
      name.appendChild(el("span", "ns-leaf"));
    }
    name.appendChild(el("span", "ns-label", label(i), full[i] || "(root)"));
    tr.appendChild(name);
    tr.appendChild(el("td", "", data.classes[r[F["class"]]]));
    tr.appendChild(el("td", "", data.shapes[r[F.input]], fedBy(i)));
    tr.appendChild(el("td", "", data.shapes[r[F.output]]));
    tr.appendChild(el("td", "ns-num", commas(r[F.params]), "own: " + commas(r[F.own_params])));
    var bound = r[F.macs_partial] ? ">=" : "";  // an uncounted operator ran here: the count is a lower bound
    if (r[F.macs] === null) tr.appendChild(el("td", "ns-num", NOT_RECORDED, "no hook runs inside TorchScript"));
    else tr.appendChild(el("td", "ns-num", bound + si(r[F.macs]),
      bound + commas(r[F.macs]) + " (own: " + (r[F.own_macs_partial] ? ">=" : "") + commas(r[F.own_macs]) + ")"));
    tr.appendChild(notes(i));
    return tr;
  }
  function spanRow(cls, d, button, text) {
    var tr = el("tr", cls), td = el("td");
    tr.dataset.d = d;
    tr.setAttribute("aria-level", String(d + 1));
    td.colSpan = COLUMNS;
    td.style.paddingLeft = (24 + 14 * d) + "px";
    td.appendChild(button);
    if (text) td.appendChild(document.createTextNode(text));
    tr.appendChild(td);
    return tr;
  }
  function moreRow(i, left) {
    var b = el("button", "ns-more-btn", "show " + Math.min(left, CHUNK) + " more");
    b.type = "button";
    var tr = spanRow("ns-more", depth[i] + 1, b, " (" + commas(left) + " not shown)");
    tr.dataset.more = i;
    return tr;
  }
  function foldRow(k) {
    var f = data.folds[k], m = f[1], first = m[0];
    var b = el("button", "ns-fold-btn", f[2] + "  " + m.length + " \u00D7 " + data.classes[rows[first][F["class"]]]);
    b.type = "button";
    b.setAttribute("aria-label", "Unfold " + m.length + " identical blocks " + f[2]);
    var params = BigInt(0), macs = BigInt(0), bound = "";
    m.forEach(function (j) {
      params += BigInt(rows[j][F.params]);
      macs = macs === null || rows[j][F.macs] === null ? null : macs + BigInt(rows[j][F.macs]);
      if (rows[j][F.macs_partial]) bound = ">=";
    });
    var tr = spanRow("ns-fold", depth[first], b, "  as " + (full[f[0]] || "(root)") + " \u00B7 " +
      data.shapes[rows[first][F.output]] + " \u00B7 " + commas(params) + " params \u00B7 " +
      (macs === null ? NOT_RECORDED : bound + si(macs)) + " mult-adds");
    tr.dataset.fold = k;
    return tr;
  }
  function items(i) {
    // the children as shown: a call's index, or -1 - k for folded run k (folds stay closed while filtering or sorting)
    var k = visibleKids(i), out = [], folding = !state.keep && !state.sort;
    for (var j = 0; j < k.length; j++) {
      var c = k[j], fk = folding ? memberFold.get(c) : undefined;
      if (fk !== undefined && !state.unfolded.has(fk)) {
        if (foldAt.get(c) === fk) out.push(-1 - fk);
        continue;
      }
      out.push(c);
    }
    return out;
  }
  function emitChildren(i, out, from) {
    var it = items(i), limit = state.shown.get(i) || CHUNK;
    for (var j = from; j < Math.min(it.length, limit); j++) {
      if (it[j] < 0) out.appendChild(foldRow(-1 - it[j]));
      else emit(it[j], out);
    }
    if (it.length > limit) out.appendChild(moreRow(i, it.length - limit));
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
    updateStatus();
  }
  function updateStatus() {
    var rowsShown = body.querySelectorAll("tr[data-i]").length;
    if (state.hits) {
      var hitsShown = body.querySelectorAll("tr.ns-hit").length;
      status.textContent = commas(state.hits.size) + " of " + commas(n) + " layers match" +
        (hitsShown < state.hits.size ? " (" + commas(hitsShown) + " shown; \u201Cshow more\u201D lists the rest)" : "");
    } else {
      status.textContent = counted(n, "layer") + " (" + counted(rowsShown, "row") + " shown)";
    }
  }
  function subtreeEnd(tr) {
    var d = Number(tr.dataset.d);
    while (tr.nextSibling && Number(tr.nextSibling.dataset.d) > d) body.removeChild(tr.nextSibling);
  }
  function toggle(tr) {
    var i = Number(tr.dataset.i), btn = tr.querySelector(".ns-toggle");
    if (!btn) return;
    if (state.expanded.has(i)) {
      state.expanded.delete(i);
      subtreeEnd(tr);
    } else {
      state.expanded.add(i);
      var f = document.createDocumentFragment();
      emitChildren(i, f, 0);
      body.insertBefore(f, tr.nextSibling);
    }
    var open = state.expanded.has(i);
    btn.textContent = open ? "\u25BE" : "\u25B8";
    btn.setAttribute("aria-expanded", String(open));
    btn.setAttribute("aria-label", btn.getAttribute("aria-label").replace(/^(Expand|Collapse)/, open ? "Collapse" : "Expand"));
    tr.setAttribute("aria-expanded", String(open));
    updateStatus();
  }
  function showMore(tr) {
    var i = Number(tr.dataset.more), before = state.shown.get(i) || CHUNK;
    state.shown.set(i, before + CHUNK);
    var f = document.createDocumentFragment();
    emitChildren(i, f, before);
    var next = f.firstChild;
    body.replaceChild(f, tr);
    focusIn(next);
    updateStatus();
  }
  function unfold(tr) {
    state.unfolded.add(Number(tr.dataset.fold));
    var prev = tr.previousSibling;
    rerenderKeepingFocus(prev);
  }
  function focusIn(tr) {
    var target = tr && tr.querySelector("button");
    if (target) target.focus();
  }
  function rerenderKeepingFocus(anchor) {
    var at = anchor && anchor.dataset ? anchor.dataset.i : null;
    render();
    if (at !== null && at !== undefined) {
      var row = document.getElementById("ns-row-" + at);
      var next = row && row.nextSibling;
      if (next) focusIn(next);
    }
  }
  function applySearch() {
    var q = search.value.trim().toLowerCase();
    if (!q) {
      if (saved) { state.expanded = saved.expanded; state.shown = saved.shown; saved = null; }
      state.keep = null;
      state.hits = null;
      render();
      return;
    }
    if (!saved) saved = { expanded: state.expanded, shown: state.shown };
    state.shown = new Map();
    var hits = new Set(), keep = new Set(), open = new Set();
    for (var i = 0; i < n; i++) {
      if (haystack(i).indexOf(q) < 0) continue;
      hits.add(i);
      keep.add(i);
      for (var p = rows[i][F.parent]; p >= 0 && !open.has(p); p = rows[p][F.parent]) { open.add(p); keep.add(p); }
    }
    state.keep = keep;
    state.hits = hits;
    state.expanded = open;
    render();
  }
  function expandAll() {
    state.expanded = new Set();
    for (var i = 0; i < n; i++) if (kids[i].length) state.expanded.add(i);
    render();
  }
  function collapseAll() {
    state.expanded = new Set(state.keep ? [] : [0]);
    render();
  }
  function reveal(i) {
    // open every enclosing call, unfold a run that hides it, page far enough, then focus that exact row
    if (state.keep && !state.keep.has(i)) { search.value = ""; applySearch(); }
    var chain = [];
    for (var p = rows[i][F.parent]; p >= 0; p = rows[p][F.parent]) chain.push(p);
    chain.forEach(function (a) { state.expanded.add(a); });
    [i].concat(chain).forEach(function (c) {
      var k = memberFold.get(c);
      if (k !== undefined) state.unfolded.add(k);
    });
    [i].concat(chain).forEach(function (c) {
      var parent = rows[c][F.parent];
      if (parent >= 0) {
        var pos = items(parent).indexOf(c) + 1;
        if (pos > (state.shown.get(parent) || CHUNK)) state.shown.set(parent, Math.ceil(pos / CHUNK) * CHUNK);
      }
    });
    render();
    var row = document.getElementById("ns-row-" + i);
    Array.prototype.forEach.call(body.querySelectorAll("tr.ns-target"), function (t) { t.classList.remove("ns-target"); });
    if (row) {
      row.classList.add("ns-target");
      row.scrollIntoView({ block: "center" });
      var b = row.querySelector("button");
      row.tabIndex = -1;
      (b || row).focus({ preventScroll: true });
    }
  }
  function sortBy(key, th) {
    state.sort = state.sort === key ? null : key;
    Array.prototype.forEach.call(document.querySelectorAll("th[aria-sort]"), function (h) { h.setAttribute("aria-sort", "none"); });
    if (state.sort) th.setAttribute("aria-sort", "descending");
    render();
  }

  body.addEventListener("click", function (ev) {
    var tr = ev.target.closest("tr");
    if (!tr) return;
    if (tr.dataset.more !== undefined) { if (ev.target.closest("button")) showMore(tr); }
    else if (tr.dataset.fold !== undefined) { if (ev.target.closest("button")) unfold(tr); }
    else if (ev.target.closest(".ns-toggle") || ev.target.closest(".ns-label")) toggle(tr);
  });
  search.addEventListener("input", applySearch);
  search.addEventListener("keydown", function (ev) {
    if (ev.key === "Escape") { search.value = ""; applySearch(); }
  });
  document.getElementById("ns-expand").addEventListener("click", expandAll);
  document.getElementById("ns-collapse").addEventListener("click", collapseAll);
  Array.prototype.forEach.call(document.querySelectorAll(".ns-sort"), function (b) {
    b.addEventListener("click", function () { sortBy(b.dataset.sort, b.closest("th")); });
  });
  Array.prototype.forEach.call(document.querySelectorAll("[data-row]"), function (link) {
    link.addEventListener("click", function () { reveal(Number(link.getAttribute("data-row"))); });
  });
  // printing shows the whole tree, unfolded, then puts the view back
  var beforePrint = null;
  window.addEventListener("beforeprint", function () {
    beforePrint = { expanded: state.expanded, shown: state.shown, unfolded: state.unfolded };
    state.unfolded = new Set(data.folds.map(function (_, k) { return k; }));
    state.shown = new Map();
    for (var j = 0; j < n; j++) if (kids[j].length > CHUNK) state.shown.set(j, kids[j].length);
    expandAll();
    document.body.dataset.printedRows = String(body.querySelectorAll("tr[data-i]").length);
  });
  window.addEventListener("afterprint", function () {
    if (!beforePrint) return;
    state.expanded = beforePrint.expanded; state.shown = beforePrint.shown; state.unfolded = beforePrint.unfolded;
    beforePrint = null;
    render();
  });
  applySearch();
  document.body.setAttribute("data-ready", "1");
  document.body.dataset.readyMs = String(Math.round(performance.now()));
})();
"""
