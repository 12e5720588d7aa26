/* The operator console's script (its views: operations/admin/console.py): live figures on the
   list and an operation's page, and the import form's upload progress. Vanilla JavaScript, no
   build. Every figure arrives formatted from the server; this only copies text into the page. */
(function () {
  "use strict";

  function each(selector, fn, root) {
    Array.prototype.forEach.call((root || document).querySelectorAll(selector), fn);
  }

  // --- live pages ---------------------------------------------------------------------------

  function startLive(root) {
    var url = root.getAttribute("data-live-url");
    var every = parseInt(root.getAttribute("data-poll-ms"), 10) || 1000;
    var active = root.getAttribute("data-active-states").split(",");
    var detail = root.getAttribute("data-detail");

    function ids() {
      var seen = {};
      each("[data-op]", function (el) { seen[el.getAttribute("data-op")] = true; });
      return Object.keys(seen);
    }

    function anyActive() {
      var found = false;
      each('[data-op][data-field="state"]', function (el) {
        if (active.indexOf(el.getAttribute("data-state")) >= 0) found = true;
      });
      return found;
    }

    function apply(op) {
      each('[data-op="' + op.op_id + '"]', function (el) {
        var field = el.getAttribute("data-field");
        var verb = el.getAttribute("data-verb");
        if (verb) {
          el.disabled = !op.allowed[verb];
        } else if (field === "bar") {
          if (op.percent === null) {
            el.hidden = true;
          } else {
            el.hidden = false;
            el.value = op.percent;
          }
        } else if (field === "state") {
          el.textContent = op.state;
          el.setAttribute("data-state", op.state);
        } else if (field && op.text[field] !== undefined) {
          el.textContent = op.text[field];
        }
      });
    }

    function applyCounts(counts) {
      each("[data-count]", function (el) {
        var state = el.getAttribute("data-count");
        if (counts[state] !== undefined) el.textContent = counts[state];
      });
    }

    function applyRecord(body) {
      if (body.record) {
        each("[data-record]", function (el) {
          el.textContent = body.record[el.getAttribute("data-record")];
        });
      }
      var tbody = document.querySelector("[data-events]");
      if (tbody && body.events) {
        while (tbody.firstChild) tbody.removeChild(tbody.firstChild);
        body.events.forEach(function (event) {
          var row = document.createElement("tr");
          ["at", "actor", "from_state", "to_state", "detail"].forEach(function (key) {
            var cell = document.createElement("td");
            cell.textContent = event[key];
            row.appendChild(cell);
          });
          tbody.appendChild(row);
        });
      }
    }

    function poll() {
      var query = "?ids=" + ids().join(",") + (detail ? "&detail=1" : "");
      fetch(url + query, { headers: { Accept: "application/json" }, credentials: "same-origin" })
        .then(function (response) {
          if (!response.ok) throw new Error("live: HTTP " + response.status);
          return response.json();
        })
        .then(function (body) {
          body.operations.forEach(apply);
          applyCounts(body.counts);
          applyRecord(body);
          root.setAttribute("data-polled", String(Date.now()));
          // Poll only while something moves; a settled page is static.
          if (body.active) window.setTimeout(poll, every);
          else root.setAttribute("data-settled", "true");
        })
        .catch(function () {
          window.setTimeout(poll, every * 5); // the server restarting, say: try again later
        });
    }

    if (anyActive()) window.setTimeout(poll, every);
    else root.setAttribute("data-settled", "true");
  }

  // --- the import form: the upload with a progress bar ----------------------------------------

  function size(bytes) {
    if (bytes < 1000) return bytes + " B";
    var units = ["kB", "MB", "GB", "TB"];
    var value = bytes / 1000;
    var unit = 0;
    while (value >= 1000 && unit < units.length - 1) { value /= 1000; unit += 1; }
    return value.toFixed(1) + " " + units[unit];
  }

  function startImport(form) {
    var error = document.getElementById("lt-import-error");
    var box = document.getElementById("lt-upload");
    var bar = document.getElementById("lt-upload-bar");
    var text = document.getElementById("lt-upload-text");
    var submit = document.getElementById("lt-import-submit");

    function fail(message) {
      error.textContent = message;
      error.hidden = false;
      submit.disabled = false;
    }

    var preview = document.getElementById("lt-preview");
    form.elements.file.addEventListener("change", function () {
      var file = form.elements.file.files[0];
      error.hidden = true;
      if (!file) { preview.hidden = true; return; }
      showPreview(form, preview, file, fail);
    });

    form.addEventListener("submit", function (event) {
      event.preventDefault();
      var file = form.elements.file.files[0];
      if (!file) { fail("Choose a CSV file to import."); return; }
      error.hidden = true;
      submit.disabled = true;
      box.hidden = false;
      var xhr = new XMLHttpRequest();
      xhr.open("POST", form.action || window.location.href);
      xhr.setRequestHeader("Accept", "application/json");
      xhr.setRequestHeader("X-CSRFToken", form.elements.csrfmiddlewaretoken.value);
      xhr.upload.addEventListener("progress", function (progress) {
        if (!progress.lengthComputable) return;
        bar.value = (100 * progress.loaded) / progress.total;
        text.textContent = "sending " + file.name + ": " + size(progress.loaded) + " of " + size(progress.total);
      });
      xhr.upload.addEventListener("load", function () {
        bar.value = 100;
        text.textContent = "sent " + file.name + " (" + size(file.size) + "); checking it";
      });
      xhr.addEventListener("load", function () {
        var body = {};
        try { body = JSON.parse(xhr.responseText); } catch (ignored) { body = {}; }
        if (xhr.status === 202 && body.redirect) {
          text.textContent = "import #" + body.op_id + " started";
          window.location.assign(body.redirect);
        } else {
          box.hidden = true;
          fail(body.message || "The upload failed (HTTP " + xhr.status + ").");
        }
      });
      xhr.addEventListener("error", function () {
        box.hidden = true;
        fail("The upload was interrupted: the server could not be reached.");
      });
      xhr.send(new FormData(form));
    });
  }

  // The preview: the first bytes of the file, checked by the server as an import would (a dry
  // run that writes nothing), shown as a table: the header, then each row and its verdict.
  function showPreview(form, box, file, fail) {
    var limit = parseInt(form.getAttribute("data-preview-bytes"), 10);
    var body = new FormData();
    body.append("file", file.slice(0, limit), file.name);
    body.append("complete", file.size <= limit ? "1" : "0");
    box.hidden = false;
    box.textContent = "Checking the first rows of " + file.name + "...";
    fetch(form.getAttribute("data-preview-url"), {
      method: "POST",
      body: body,
      credentials: "same-origin",
      headers: { Accept: "application/json", "X-CSRFToken": form.elements.csrfmiddlewaretoken.value },
    })
      .then(function (response) {
        return response.json().then(function (json) { return { ok: response.ok, json: json }; });
      })
      .then(function (answer) {
        if (!answer.ok) { box.hidden = true; fail(answer.json.message); return; }
        renderPreview(box, file, answer.json);
      })
      .catch(function () { box.hidden = true; });
  }

  function cell(tag, text, className) {
    var el = document.createElement(tag);
    el.textContent = text;
    if (className) el.className = className;
    return el;
  }

  function renderPreview(box, file, preview) {
    while (box.firstChild) box.removeChild(box.firstChild);
    var rows = preview.rows.length;
    var summary = "Preview of " + file.name + " (" + size(file.size) + "): the first " + rows + " row" +
      (rows === 1 ? "" : "s") + ", " + (rows - preview.failed) + " fine, " + preview.failed + " rejected.";
    box.appendChild(cell("p", summary, "lt-preview-summary"));
    var table = document.createElement("table");
    table.className = "lt-preview";
    var head = document.createElement("tr");
    head.appendChild(cell("th", "line"));
    preview.columns.forEach(function (name) { head.appendChild(cell("th", name)); });
    head.appendChild(cell("th", "check"));
    table.appendChild(head);
    preview.rows.forEach(function (row) {
      var tr = document.createElement("tr");
      tr.appendChild(cell("td", String(row.line)));
      if (row.problem) {
        tr.className = "lt-rejected";
        var raw = cell("td", row.raw);
        raw.colSpan = preview.columns.length;
        tr.appendChild(raw);
        tr.appendChild(cell("td", "rejected: " + row.problem));
      } else {
        row.values.forEach(function (value) { tr.appendChild(cell("td", value)); });
        tr.appendChild(cell("td", "ok"));
      }
      table.appendChild(tr);
    });
    box.appendChild(table);
  }

  function start() {
    var root = document.getElementById("lt-console");
    if (root && root.getAttribute("data-live-url")) startLive(root);
    var form = document.getElementById("lt-import");
    if (form) startImport(form);
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start);
  else start();
})();
