// segtune report: the leaderboard's filters, sorting, pages and column toggles; the learning-curve selector.
// Sets data-report-ready="1" on <html> when it ran to its end (the browser tests wait for it).
(function () {
  var table = document.getElementById('lb-table'), src = document.getElementById('lb-data');
  if (table && src) {
    // every row's cell texts (sections/leaderboard.py); the table shows one page of the filtered, sorted rows
    var data = JSON.parse(src.textContent), cols = data.columns, all = data.rows, body = table.tBodies[0];
    var at = {}; cols.forEach(function (c, i) { at[c.k] = i; });
    var controls = document.querySelectorAll('[data-filter]'), page = 0, order = all.map(function (_, i) { return i; });
    var shown = order, sortCol = null, desc = true;
    function esc(s) { return String(s).replace(/[&<>"]/g, function (ch) { return {'&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;'}[ch]; }); }
    function num(text) { var v = parseFloat(String(text).replace(/,/g, '')); return isFinite(v) ? v : NaN; }
    function cellHtml(c, text) {
      var inner = esc(text);
      if (c.k === 'status') inner = '<span class="st st-' + esc(text) + '">' + esc(text) + '</span>';
      else if (c.k === 'error' && text) inner = '<span title="' + esc(text) + '">' + esc(text.slice(0, 60)) + '</span>';
      var v = c.n ? num(text) : NaN;
      return '<td class="' + c.c + '"' + (isFinite(v) ? ' data-v="' + v + '"' : '') + '>' + inner + '</td>';
    }
    function rowHtml(r) {
      var a = data.attrs.map(function (k) { var i = at[k]; return 'data-' + k + '="' + esc(i === undefined || r[i] === '—' ? '' : r[i]) + '"'; });
      return '<tr ' + a.join(' ') + ' data-name="' + esc(r[at.label]).toLowerCase() + '">' + cols.map(function (c, i) { return cellHtml(c, r[i]); }).join('') + '</tr>';
    }
    function draw() {
      var pages = Math.max(1, Math.ceil(shown.length / data.page));
      page = Math.min(Math.max(page, 0), pages - 1);
      body.innerHTML = shown.slice(page * data.page, (page + 1) * data.page).map(function (i) { return rowHtml(all[i]); }).join('');
      document.querySelector('.pager .page').textContent = 'page ' + (page + 1) + ' of ' + pages;
      document.querySelector('.controls .shown').textContent = shown.length + ' of ' + all.length + ' trials';
    }
    function apply() {
      var f = {};
      controls.forEach(function (c) { f[c.dataset.filter] = c.value.toLowerCase(); });
      shown = order.filter(function (i) {
        var r = all[i];
        return ['status', 'arch', 'kind'].every(function (k) { var v = at[k] === undefined ? '' : r[at[k]]; return !f[k] || (v === '—' ? '' : v).toLowerCase() === f[k]; })
          && (!f.name || String(r[at.label]).toLowerCase().indexOf(f.name) >= 0);
      });
      page = 0; draw();
    }
    function sortBy(ci) {
      var n = cols[ci].n;
      order = order.slice().sort(function (a, b) {
        var x = all[a][ci], y = all[b][ci], xv = n ? num(x) : NaN, yv = n ? num(y) : NaN;
        if (isNaN(xv) && isNaN(yv)) { var c = String(x).localeCompare(String(y), undefined, {numeric: true}); return desc ? -c : c; }
        if (isNaN(xv)) return 1;
        if (isNaN(yv)) return -1;
        return desc ? yv - xv : xv - yv;
      });
    }
    controls.forEach(function (c) { c.addEventListener('input', apply); c.addEventListener('change', apply); });
    document.querySelectorAll('[data-toggle]').forEach(function (c) {
      c.addEventListener('change', function () { table.classList.toggle('hide-' + c.dataset.toggle, !c.checked); });
    });
    document.querySelectorAll('.pager [data-page]').forEach(function (b) {
      b.addEventListener('click', function () { page += parseInt(b.dataset.page, 10); draw(); });
    });
    table.querySelectorAll('th').forEach(function (th, i) {
      th.addEventListener('click', function () {
        desc = sortCol === i ? !desc : true; sortCol = i;
        table.querySelectorAll('th').forEach(function (h) { delete h.dataset.dir; });
        th.dataset.dir = desc ? 'desc' : 'asc';
        sortBy(i); apply();
      });
    });
    apply();
  }
  var sel = document.getElementById('curve-select');
  if (sel && window.Plotly) {
    sel.addEventListener('change', function () {
      var gd = document.getElementById(sel.dataset.fig), v = sel.value, ids;
      ids = v.slice(0, 2) === 'g:' ? window.SEGTUNE_CURVE_GROUPS[v.slice(2)] : [v.slice(2)];
      Plotly.restyle(gd, {visible: gd.data.map(function (t) { return ids.indexOf(t.meta) >= 0 ? true : 'legendonly'; })});
    });
  }
  document.documentElement.setAttribute('data-report-ready', '1');
})();
