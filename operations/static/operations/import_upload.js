/* The import form's upload, resumable: the file goes to /api/uploads/ in pieces with
   tus-js-client (vendor/tus-js-client/tus.min.js, tus 1.0), which keeps each unfinished upload
   in this browser's localStorage under the file's fingerprint (name, type, size, last change).
   Choosing the same file again after a reload or a dropped network continues that upload from
   the server's offset; a dropped network is first retried on its own. Once the file is all
   there, the form is posted with upload=<its URL> instead of the file, with the form's other
   fields (strict, and whatever else the form has). Cancel stops the upload and deletes it on
   the server (tus termination). Without JavaScript the form posts the file in one request. */
(function () {
  "use strict";

  // Waits between the tries after a failed request (a dropped network, a busy server).
  var RETRY_DELAYS_MS = [0, 1000, 3000, 5000, 10000, 20000];
  // Refusals after which the upload is worth continuing later: an offset that moved, another
  // request of it still running, too many requests.
  var KEEP_AFTER = [409, 423, 429];

  var size = window.longTask.size; // console.js's

  function startResumableImport(form) {
    var error = document.getElementById("lt-import-error");
    var box = document.getElementById("lt-upload");
    var bar = document.getElementById("lt-upload-bar");
    var text = document.getElementById("lt-upload-text");
    var cancel = document.getElementById("lt-upload-cancel");
    var unfinished = document.getElementById("lt-unfinished");
    var submit = document.getElementById("lt-import-submit");
    var csrf = form.elements.csrfmiddlewaretoken.value;
    var endpoint = form.getAttribute("data-uploads-url");
    var current = null;

    function fail(message) {
      error.textContent = message;
      error.hidden = false;
      box.hidden = true;
      cancel.hidden = true;
      each(form, "input[type=submit]", function (button) { button.disabled = false; });
    }

    function busy() {
      error.hidden = true;
      box.hidden = false;
      cancel.hidden = false;
      each(form, "input[type=submit]", function (button) { button.disabled = true; });
    }

    function showUnfinished() {
      var storage = tus.defaultOptions.urlStorage;
      storage.findAllUploads().then(function (uploads) {
        unfinished.textContent = "";
        uploads = uploads.filter(function (upload) { return upload.uploadUrl; });
        unfinished.hidden = uploads.length === 0;
        uploads.forEach(function (upload) {
          var line = document.createElement("p");
          var name = (upload.metadata && upload.metadata.filename) || "a file";
          line.textContent = "Unfinished upload of " + name + " (" + size(upload.size) + "), begun " +
            new Date(upload.creationTime).toLocaleString() + ": choose the same file and import it to continue. ";
          var discard = document.createElement("button");
          discard.type = "button";
          discard.className = "button";
          discard.textContent = "Discard";
          discard.addEventListener("click", function () {
            tus.Upload.terminate(upload.uploadUrl, { headers: { "X-CSRFToken": csrf } })
              .catch(function () { /* gone already, or expired: forget it all the same */ })
              .then(function () { return storage.removeUpload(upload.urlStorageKey); })
              .then(showUnfinished);
          });
          line.appendChild(discard);
          unfinished.appendChild(line);
        });
      });
    }

    function startOperation(uploadUrl, submitter) {
      var body = submitter ? new FormData(form, submitter) : new FormData(form);
      if (uploadUrl) {
        body.delete("file");
        body.append("upload", uploadUrl);
      }
      text.textContent = "sent; starting the import";
      fetch(form.action || window.location.href, {
        method: "POST",
        body: body,
        credentials: "same-origin",
        headers: { "Accept": "application/json", "X-CSRFToken": csrf },
      })
        .then(function (response) {
          return response.json().then(function (json) { return { status: response.status, json: json }; });
        })
        .then(function (answer) {
          if (answer.status === 202 && answer.json.redirect) {
            text.textContent = "import #" + answer.json.op_id + " started";
            window.location.assign(answer.json.redirect);
          } else {
            fail(answer.json.message || "The import did not start (HTTP " + answer.status + ").");
          }
        })
        .catch(function () { fail("The import did not start: the server could not be reached."); });
    }

    function send(file, submitter) {
      var began = Date.now();
      var from = null;
      var upload = new tus.Upload(file, {
        endpoint: endpoint,
        chunkSize: Number(form.getAttribute("data-chunk-bytes")) || Infinity,
        retryDelays: RETRY_DELAYS_MS,
        metadata: { filename: file.name, filetype: file.type || "text/csv" },
        headers: { "X-CSRFToken": csrf },
        removeFingerprintOnSuccess: true,
        onProgress: function (sent, total) {
          if (from === null) { from = sent; began = Date.now(); }
          var seconds = (Date.now() - began) / 1000;
          var speed = seconds > 0 && sent > from ? ", " + size(Math.round((sent - from) / seconds)) + "/s" : "";
          bar.value = total ? (100 * sent) / total : 100;
          text.textContent = "sending " + file.name + ": " + size(sent) + " of " + size(total) + speed;
        },
        onSuccess: function () {
          current = null;
          cancel.hidden = true;
          startOperation(upload.url, submitter);
        },
        onError: function (failure) {
          current = null;
          var answer = failure.originalResponse;
          var status = answer ? answer.getStatus() : 0;
          var message = "";
          try { message = answer && JSON.parse(answer.getBody()).message; } catch (ignored) { message = ""; }
          if (status >= 400 && status < 500 && KEEP_AFTER.indexOf(status) < 0) {
            // Refused (not text, too large...): sending it again would not help; drop it.
            upload.abort(true).catch(function () { /* it expires on the server */ }).then(showUnfinished);
            fail(message || "The upload was refused (HTTP " + status + ").");
            return;
          }
          fail((message || "The upload stopped: the server could not be reached.") +
            " Import the same file again to continue where it stopped.");
          showUnfinished();
        },
      });
      current = upload;
      upload.findPreviousUploads().then(function (previous) {
        if (previous.length) {
          upload.resumeFromPreviousUpload(previous[0]);
          text.textContent = "continuing the upload of " + file.name;
        }
        upload.start();
      });
    }

    form.addEventListener("submit", function (event) {
      event.preventDefault();
      var file = form.elements.file.files[0];
      if (!file) { fail("Choose a CSV file to import."); return; }
      busy();
      bar.value = 0;
      text.textContent = "sending " + file.name;
      // An empty file has nothing to resume: the form goes as it is, and the server says why not.
      if (file.size === 0) startOperation(null, event.submitter);
      else send(file, event.submitter);
    });

    cancel.addEventListener("click", function () {
      if (!current) return;
      var upload = current;
      current = null;
      text.textContent = "cancelling";
      upload.abort(true)
        .catch(function () { /* the server is away: it deletes the upload when it expires */ })
        .then(function () {
          fail("Upload cancelled: nothing of it is kept.");
          showUnfinished();
        });
    });

    showUnfinished();
  }

  function each(root, selector, fn) {
    Array.prototype.forEach.call(root.querySelectorAll(selector), fn);
  }

  function start() {
    var form = document.getElementById("lt-import");
    if (form && window.tus && tus.isSupported) startResumableImport(form);
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start);
  else start();
})();
