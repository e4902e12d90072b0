// The console's only script: Refresh on the Jobs page (the panes swapped in place, selection
// and scroll kept), the Live Ops cards polled every few seconds. Nothing else runs by itself.
"use strict";

function swap(url, ids, stamp) {
  return fetch(url, { credentials: "same-origin", headers: { Accept: "text/html" } })
    .then(function (response) {
      return response.text().then(function (text) {
        var fresh = new DOMParser().parseFromString(text, "text/html");
        ids.forEach(function (id) {
          var old = document.getElementById(id);
          var next = fresh.getElementById(id);
          if (!old) return;
          if (!response.ok || !next) {
            old.insertAdjacentHTML("afterbegin",
              '<p class="notice warn">Could not refresh (' + response.status + "): reload the page or sign in again.</p>");
            return;
          }
          var top = old.scrollTop;
          old.innerHTML = next.innerHTML;
          old.scrollTop = top;
        });
        if (stamp && response.ok) stamp.textContent = "updated " + new Date().toLocaleTimeString();
      });
    })
    .catch(function () {
      if (stamp) stamp.textContent = "could not reach the server";
    });
}

document.addEventListener("DOMContentLoaded", function () {
  var stamp = document.getElementById("refreshed");
  var refresh = document.getElementById("refresh");
  if (refresh) {
    refresh.addEventListener("click", function () {
      var y = window.scrollY;
      refresh.disabled = true;
      swap(refresh.dataset.panes + window.location.search, ["runs", "records"], stamp).then(function () {
        refresh.disabled = false;
        window.scrollTo(0, y);
      });
    });
  }
  var live = document.getElementById("live");
  if (live) {
    var every = parseInt(live.dataset.every, 10) || 5000;
    window.setInterval(function () {
      swap(live.dataset.poll, ["live"], stamp);
    }, every);
  }
});
