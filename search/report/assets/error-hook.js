// segtune report: runs first in <head>; records every uncaught error in <html data-js-errors>.
document.documentElement.setAttribute('data-js-errors', '');
(function () {
  var errs = [];
  function note(msg) { errs.push(String(msg)); document.documentElement.setAttribute('data-js-errors', errs.join(' | ')); }
  window.addEventListener('error', function (e) { note((e.message || e) + ' (line ' + e.lineno + ':' + e.colno + ')'); });
  window.addEventListener('unhandledrejection', function (e) { note('unhandled rejection: ' + (e.reason && e.reason.message || e.reason)); });
})();
