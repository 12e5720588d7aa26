/* The import form's target, mapping and dry run (operations/admin/console.py): which column of
   the file fills which field of the chosen target, how much of the file the preview checked,
   and "Check the whole file" (a dry run) beside "Import". Apart from console.js, which sends
   the file and shows the preview's rows: this script only reads the preview it announces
   (the "lt-preview" event) and sets the form's `dry_run` field. */
(function () {
  "use strict";

  function el(tag, text, className) {
    var node = document.createElement(tag);
    if (text !== undefined) node.textContent = text;
    if (className) node.className = className;
    return node;
  }

  function clear(node) {
    while (node.firstChild) node.removeChild(node.firstChild);
  }

  // ~1,000,000: two significant figures, with thousands separators.
  function about(number) {
    if (number < 100) return String(Math.round(number));
    var scale = Math.pow(10, Math.floor(Math.log10(number)) - 1);
    return (Math.round(number / scale) * scale).toLocaleString("en-US");
  }

  // What the preview checked: all of a small file, or its first rows of an estimate of the whole.
  function checkedText(file, preview) {
    var shown = preview.rows.length;
    var rows = shown + " row" + (shown === 1 ? "" : "s");
    if (preview.complete) return "The preview checked all " + rows + " of " + file.name + ".";
    var text = "The preview checked the first " + rows + " of " + file.name;
    if (shown && preview.rows_bytes > 0) {
      var perRow = preview.rows_bytes / shown;
      text += " (~" + about((file.size - preview.header_bytes) / perRow) + " rows, estimated from its size)";
    }
    return text + ".";
  }

  function showMapping(box, preview) {
    clear(box);
    if (!preview.target) { box.hidden = true; return; }
    box.hidden = false;
    box.appendChild(el("p", "Columns of the file → fields of target " + preview.target + ":", "lt-preview-summary"));
    var table = el("table", undefined, "lt-mapping");
    var head = el("tr");
    ["field", "from column", ""].forEach(function (name) { head.appendChild(el("th", name)); });
    table.appendChild(head);
    preview.fields.forEach(function (field) {
      var row = el("tr");
      row.appendChild(el("td", field.field + (field.required ? " *" : "")));
      if (field.column !== null) {
        row.appendChild(el("td", field.column));
        row.appendChild(el("td", "✓"));
      } else {
        row.appendChild(el("td", "—"));
        row.appendChild(el("td", field.required ? "missing: required" : "left empty"));
        if (field.required) row.className = "lt-missing";
      }
      table.appendChild(row);
    });
    box.appendChild(table);
    if (preview.unused_columns.length) {
      box.appendChild(el("p", "Not imported: " + preview.unused_columns.join(", "), "help"));
    }
    if (preview.header_problem) box.appendChild(el("p", preview.header_problem, "errornote"));
  }

  function offerDryRun(previewBox, form, file, preview) {
    var summary = previewBox.querySelector(".lt-preview-summary");
    var note = el("p", undefined, "lt-checked");
    note.appendChild(document.createTextNode(checkedText(file, preview) + " "));
    if (preview.header_problem) {
      note.appendChild(document.createTextNode("The header does not fit target " + preview.target + ": see above."));
    } else if (!preview.complete || preview.target) {
      var why = preview.target ? " every row, unique keys against the table included" : " every row";
      var button = el("button", "Check the whole file", "button lt-check-whole");
      button.type = "button";
      button.addEventListener("click", function () { form.querySelector("#lt-check-submit").click(); });
      note.appendChild(button);
      note.appendChild(document.createTextNode(" — a dry run:" + why + ", nothing written; then Import from its page."));
    }
    if (summary) summary.parentNode.insertBefore(note, summary.nextSibling);
    else previewBox.insertBefore(note, previewBox.firstChild);
  }

  function start() {
    var form = document.getElementById("lt-import");
    if (!form || !form.elements.target) return;
    var mapping = document.getElementById("lt-mapping");
    var dryRun = form.elements.dry_run;
    form.elements.target.addEventListener("change", function () {
      if (form.elements.file.files[0]) form.elements.file.dispatchEvent(new Event("change"));
      else mapping.hidden = true;
    });
    form.elements.file.addEventListener("change", function () {
      if (!form.elements.file.files[0]) mapping.hidden = true;
    });
    form.addEventListener("lt-preview", function (event) {
      showMapping(mapping, event.detail.preview);
      offerDryRun(document.getElementById("lt-preview"), form, event.detail.file, event.detail.preview);
    });
    document.getElementById("lt-check-submit").addEventListener("click", function () { dryRun.value = "1"; });
    document.getElementById("lt-import-submit").addEventListener("click", function () { dryRun.value = ""; });
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start);
  else start();
})();
