/* The operator console's script (its views: operations/admin/console.py): live figures on the
   list and an operation's page, and the import form's preview (its upload: import_upload.js). Vanilla JavaScript, no
   build. Every figure arrives formatted from the server; this only copies text into the page. */
(function () {
  "use strict";

  function each(selector, fn, root) {
    Array.prototype.forEach.call((root || document).querySelectorAll(selector), fn);
  }

  // --- live pages ---------------------------------------------------------------------------
  // One request a poll (live.py): every second while something moves, every few seconds when
  // nothing does, never while the page is hidden; a list never stops, an operation's page only
  // once its operation is in a final state (nothing can change any more).

  function startLive(root) {
    var url = root.getAttribute("data-live-url");
    var fast = parseInt(root.getAttribute("data-poll-ms"), 10) || 1000;
    var idle = parseInt(root.getAttribute("data-idle-poll-ms"), 10) || 5000;
    var finals = (root.getAttribute("data-final-states") || "").split(",");
    var detail = root.getAttribute("data-detail");
    var since = root.getAttribute("data-since");
    var timer = null;
    var inFlight = false;
    var stopped = false;

    function ids() {
      var seen = {};
      var order = [];
      each("[data-op]", function (el) {
        var id = el.getAttribute("data-op");
        if (!seen[id]) { seen[id] = true; order.push(id); }
      });
      return order.slice(0, 200); // the newest first: new rows go to the top
    }

    function setText(el, text) {
      if (el.textContent !== text) el.textContent = text;
    }

    function applyField(el, field, op) {
      if (field === "bar") {
        el.hidden = op.percent === null;
        if (op.percent !== null) el.value = op.percent;
      } else if (field === "state") {
        setText(el, op.state);
        el.setAttribute("data-state", op.state);
      } else if (field === "error") {
        setText(el, op.error);
        el.hidden = !op.error;
      } else if (field && op.text[field] !== undefined) {
        setText(el, op.text[field]);
      }
    }

    function apply(op) {
      each('[data-op="' + op.op_id + '"]', function (el) {
        var verb = el.getAttribute("data-verb");
        var when = el.getAttribute("data-when");
        if (verb) el.disabled = !op.allowed[verb];
        if (when === "download") el.hidden = !op.download;
        if (when === "no-download") el.hidden = op.download;
        applyField(el, el.getAttribute("data-field"), op);
      });
    }

    // A message that said what the operation was ("… is pausing") goes once it has moved on.
    function dropStaleMessages(state) {
      each(".messagelist li", function (li) {
        var tags = li.className.split(/\s+/).filter(function (c) { return c.indexOf("lt-while-") === 0; });
        if (tags.length && tags.indexOf("lt-while-" + state) < 0) li.parentNode.removeChild(li);
      });
      var list = document.querySelector(".messagelist");
      if (list && !list.children.length) list.parentNode.removeChild(list);
    }

    function applyCounts(counts) {
      each("[data-count]", function (el) {
        var state = el.getAttribute("data-count");
        if (counts[state] !== undefined) setText(el, String(counts[state]));
      });
    }

    function row(cells) {
      var tr = document.createElement("tr");
      cells.forEach(function (value) {
        var td = document.createElement("td");
        td.textContent = value;
        tr.appendChild(td);
      });
      return tr;
    }

    function applyRecord(body) {
      if (body.record) {
        each("[data-record]", function (el) { setText(el, body.record[el.getAttribute("data-record")]); });
      }
      var tbody = document.querySelector("[data-events]");
      if (tbody && body.events && tbody.children.length !== body.events.length) {
        while (tbody.firstChild) tbody.removeChild(tbody.firstChild);
        body.events.forEach(function (event) {
          tbody.appendChild(row([event.at, event.actor, event.from_state, event.to_state, event.detail]));
        });
      }
    }

    // A dry run's rejected rows by reason, as the server counted them so far (all of them each
    // poll: a few dozen kinds at most).
    function applyVerdicts(verdicts) {
      var tbody = document.querySelector("[data-verdicts]");
      if (!tbody || !verdicts) return;
      var text = verdicts.map(function (v) { return v.count + "\t" + v.kind; }).join("\n");
      if (tbody.getAttribute("data-shown") === text) return;
      while (tbody.firstChild) tbody.removeChild(tbody.firstChild);
      verdicts.forEach(function (v) { tbody.appendChild(row([v.count, v.kind])); });
      tbody.setAttribute("data-shown", text);
      tbody.parentNode.hidden = !verdicts.length;
    }

    // The row errors: those recorded since the last poll are added (up to the page's limit);
    // a terminate deletes them all, and the table empties.
    function errorsTable() { return document.querySelector("[data-row-errors]"); }

    function errorsQuery() {
      var tbody = errorsTable();
      if (!tbody) return "";
      var last = tbody.lastElementChild;
      return "&errors_shown=" + tbody.children.length + "&errors_after=" + (last ? last.getAttribute("data-line") : 0);
    }

    function applyRowErrors(found) {
      var tbody = errorsTable();
      if (!tbody || !found) return;
      if (found.reset) while (tbody.firstChild) tbody.removeChild(tbody.firstChild);
      var room = parseInt(tbody.getAttribute("data-row-errors"), 10) - tbody.children.length;
      found.rows.slice(0, Math.max(room, 0)).forEach(function (error) {
        var tr = row([String(error.line), error.reason, ""]);
        var code = document.createElement("code");
        code.textContent = error.raw;
        tr.lastChild.appendChild(code);
        tr.setAttribute("data-line", String(error.line));
        tbody.appendChild(tr);
      });
    }

    // The list's own count ("12 operations" under it) grows with the rows added.
    function addToCount(added) {
      var paginator = document.querySelector("#changelist-form .paginator");
      var one = root.getAttribute("data-noun-one");
      var many = root.getAttribute("data-noun-many");
      if (!paginator || !added) return;
      var pattern = new RegExp("(\\d+) (" + many + "|" + one + ")\\b");
      Array.prototype.forEach.call(paginator.childNodes, function (node) {
        var found = node.nodeType === 3 && node.textContent.match(pattern);
        if (!found) return;
        var n = parseInt(found[1], 10) + added;
        node.textContent = node.textContent.replace(found[0], n + " " + (n === 1 ? one : many));
      });
    }

    // The admin's actions (actions.js) count and select-all the rows that were there when the
    // page loaded: with new rows, it starts again over all of them, and counts them.
    function refreshActions() {
      var boxes = document.querySelectorAll("tr input.action-select");
      var counter = document.querySelector("span.action-counter");
      var ready = window.Actions && document.getElementById("action-toggle") &&
        document.querySelector("#changelist-form button[name=index]");
      if (!ready || !boxes.length) return;
      if (counter) counter.setAttribute("data-actions-icnt", String(boxes.length));
      window.Actions(boxes);
      var checked = Array.prototype.filter.call(boxes, function (box) { return box.checked; }).length;
      if (counter) counter.textContent = checked + " of " + boxes.length + " selected";
    }

    // A list: the rows of new operations (rendered by the server as the list renders its own)
    // go to the top; an empty list gets the table they came in.
    function applyNewRows(html) {
      if (!html) return false;
      var holder = document.createElement("template");
      holder.innerHTML = html;
      var tbody = document.querySelector("#result_list tbody");
      var form = document.getElementById("changelist-form");
      var table = holder.content.querySelector(".results");
      var added = 0;
      if (!tbody && form && table) {
        each("tbody tr", function (tr) { tr.classList.add("lt-new"); added += 1; }, table);
        form.insertBefore(table, form.querySelector(".paginator"));
        addToCount(added);
        return true;
      }
      if (!tbody) { window.location.reload(); return true; }
      var rows = Array.prototype.slice.call(holder.content.querySelectorAll("tbody tr"));
      rows.reverse().forEach(function (tr) {
        var id = tr.querySelector("[data-op]");
        if (id && tbody.querySelector('[data-op="' + id.getAttribute("data-op") + '"]')) return;
        tr.classList.add("lt-new");
        tbody.insertBefore(tr, tbody.firstChild);
        added += 1;
      });
      addToCount(added);
      if (added) refreshActions();
      return true;
    }

    function query() {
      var q = "?ids=" + ids().join(",");
      if (detail) q += "&detail=1" + errorsQuery();
      if (since !== null) q += "&since=" + since + "&filters=" + encodeURIComponent(window.location.search.replace(/^\?/, ""));
      return q;
    }

    function schedule(ms) {
      window.clearTimeout(timer);
      timer = null;
      if (stopped || document.visibilityState === "hidden") return;
      timer = window.setTimeout(poll, ms);
    }

    function settle(body) {
      var op = detail && body.operations[0];
      if (op && finals.indexOf(op.state) >= 0) {
        stopped = true;
        root.setAttribute("data-settled", "true");
      }
    }

    function poll() {
      if (inFlight) return;
      inFlight = true;
      fetch(url + query(), { headers: { Accept: "application/json" }, credentials: "same-origin" })
        .then(function (response) {
          if (!response.ok) throw new Error("live: HTTP " + response.status);
          return response.json();
        })
        .then(function (body) {
          body.operations.forEach(apply);
          if (detail && body.operations.length) dropStaleMessages(body.operations[0].state);
          applyCounts(body.counts);
          applyRecord(body);
          applyRowErrors(body.row_errors);
          applyVerdicts(body.verdicts);
          var grew = applyNewRows(body.new_rows);
          root.setAttribute("data-polled", String(Date.now()));
          inFlight = false;
          settle(body);
          schedule(body.active || grew ? fast : idle);
        })
        .catch(function () {
          inFlight = false;
          schedule(idle); // the server restarting, say: try again later
        });
    }

    // Hidden: the timer is cleared (schedule); shown again: a poll at once.
    document.addEventListener("visibilitychange", function () { schedule(0); });
    schedule(fast);
  }

  // --- the import form: the preview of the chosen file -----------------------------------------

  function size(bytes) {
    if (bytes < 1000) return bytes + " B";
    var units = ["kB", "MB", "GB", "TB"];
    var value = bytes / 1000;
    var unit = 0;
    while (value >= 1000 && unit < units.length - 1) { value /= 1000; unit += 1; }
    return value.toFixed(1) + " " + units[unit];
  }
  // Shared with import_upload.js (loaded after this file).
  window.longTask = window.longTask || {};
  window.longTask.size = size;

  function startImport(form) {
    var error = document.getElementById("lt-import-error");

    function fail(message) {
      error.textContent = message;
      error.hidden = false;
    }

    var preview = document.getElementById("lt-preview");
    form.elements.file.addEventListener("change", function () {
      var file = form.elements.file.files[0];
      error.hidden = true;
      if (!file) { preview.hidden = true; return; }
      showPreview(form, preview, file, fail);
    });

    // The upload itself, resumable, is import_upload.js's.
  }

  // The preview: the first bytes of the file, checked by the server as an import would (a dry
  // run that writes nothing), shown as a table: the header, then each row and its verdict.
  function showPreview(form, box, file, fail) {
    var limit = parseInt(form.getAttribute("data-preview-bytes"), 10);
    var body = new FormData();
    body.append("file", file.slice(0, limit), file.name);
    body.append("complete", file.size <= limit ? "1" : "0");
    if (form.elements.target && form.elements.target.value) body.append("target", form.elements.target.value);
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
        // import_target.js shows the mapping and offers the dry run of the whole file.
        form.dispatchEvent(new CustomEvent("lt-preview", { detail: { file: file, preview: answer.json } }));
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
