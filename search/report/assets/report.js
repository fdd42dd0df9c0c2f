// segtune report: leaderboard filters, sorting and column toggles; the learning-curve selector.
// Sets data-report-ready="1" on <html> when it ran to its end (the browser tests wait for it).
(function () {
  var table = document.getElementById('lb-table');
  if (table) {
    var body = table.tBodies[0];
    var controls = document.querySelectorAll('[data-filter]');
    function apply() {
      var f = {}, n = 0;
      controls.forEach(function (c) { f[c.dataset.filter] = c.value.toLowerCase(); });
      Array.prototype.forEach.call(body.rows, function (r) {
        var ok = ['status', 'arch', 'kind'].every(function (k) { return !f[k] || (r.dataset[k] || '').toLowerCase() === f[k]; })
          && (!f.name || r.dataset.name.indexOf(f.name) >= 0);
        r.style.display = ok ? '' : 'none'; n += ok;
      });
      document.querySelector('.controls .shown').textContent = n + ' of ' + body.rows.length + ' trials';
    }
    controls.forEach(function (c) { c.addEventListener('input', apply); c.addEventListener('change', apply); });
    document.querySelectorAll('[data-toggle]').forEach(function (c) {
      c.addEventListener('change', function () { table.classList.toggle('hide-' + c.dataset.toggle, !c.checked); });
    });
    table.querySelectorAll('th').forEach(function (th, i) {
      th.addEventListener('click', function () {
        var desc = th.dataset.dir !== 'desc';
        table.querySelectorAll('th').forEach(function (h) { delete h.dataset.dir; });
        th.dataset.dir = desc ? 'desc' : 'asc';
        var rows = Array.prototype.slice.call(body.rows);
        rows.sort(function (a, b) {
          var x = a.cells[i], y = b.cells[i], xv = x.dataset.v, yv = y.dataset.v;
          if (xv === undefined && yv === undefined) { var c = x.textContent.localeCompare(y.textContent, undefined, {numeric: true}); return desc ? -c : c; }
          if (xv === undefined) return 1;
          if (yv === undefined) return -1;
          return desc ? yv - xv : xv - yv;
        });
        rows.forEach(function (r) { body.appendChild(r); });
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
