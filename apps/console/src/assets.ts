// The pages' one script, served from /assets/console.js (the Content-Security-Policy allows no
// inline script): the fleet's counts after the first screen, the host page's time slider, and a
// rollout's live view fed by Server-Sent Events.
export const CONSOLE_SCRIPT = `'use strict';
(function () {
  var counts = document.getElementById('counts');
  if (counts) {
    fetch(counts.dataset.src, { credentials: 'same-origin' })
      .then(function (r) { return r.json(); })
      .then(function (c) {
        if (c.error) { counts.textContent = c.error.message; return; }
        counts.textContent = '';
        var names = { total: 'hosts', 'up-to-date': 'up to date', 'patch-missing': 'patch missing',
          'exposed-past-deadline': 'exposed past deadline', 'reboot-required': 'reboot required', offline: 'offline', drift: 'drift' };
        Object.keys(names).forEach(function (k) {
          var span = document.createElement('span');
          span.dataset.count = k;
          span.textContent = (c[k] || 0) + ' ' + names[k];
          counts.appendChild(span);
        });
      })
      .catch(function () { counts.textContent = 'counts unavailable'; });
  }
  var slider = document.getElementById('time-slider');
  var at = document.getElementById('at');
  if (slider && at) {
    var times = JSON.parse(slider.dataset.times || '[]');
    slider.addEventListener('input', function () { at.value = times[Number(slider.value)] || ''; });
    slider.addEventListener('change', function () { if (at.value) at.form.submit(); });
  }
  var live = document.getElementById('live');
  if (live && window.EventSource) {
    var body = document.getElementById('live-body');
    var status = document.getElementById('live-status');
    var source = new EventSource(live.dataset.src);
    var updates = 0;
    source.addEventListener('rollout', function (e) {
      var m = JSON.parse(e.data);
      body.innerHTML = m.html;
      updates += 1;
      live.dataset.updates = String(updates);
      status.textContent = 'live: ' + updates + ' update(s)' + (m.event ? ', last: ' + m.event : '');
    });
    source.addEventListener('end', function () {
      source.close();
      status.textContent = 'live: ' + updates + ' update(s); the rollout has ended';
    });
    source.addEventListener('failed', function (e) {
      source.close();
      status.textContent = 'live view stopped: ' + JSON.parse(e.data).message;
    });
  }
})();
`;
