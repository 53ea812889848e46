// Copying a new API key's secret and its examples, and focusing it once issued.
(function () {
  var status = document.querySelector(".issued .copied");
  function say(text) { if (status) { status.textContent = text; } }
  function fallback(source) {
    var field = source.tagName === "INPUT" ? source : null;
    if (!field) {
      field = document.createElement("textarea");
      field.value = source.textContent;
      field.setAttribute("readonly", "");
      field.style.position = "absolute"; field.style.left = "-9999px";
      document.body.appendChild(field);
    }
    field.select();
    var done = false;
    try { done = document.execCommand("copy"); } catch (e) { done = false; }
    if (field !== source) { document.body.removeChild(field); }
    say(done ? "Copied." : "Select the text and press Ctrl+C (⌘C on a Mac) to copy it.");
  }
  document.querySelectorAll("[data-copy]").forEach(function (button) {
    button.addEventListener("click", function () {
      var source = document.getElementById(button.getAttribute("data-copy"));
      var text = source.tagName === "INPUT" ? source.value : source.textContent;
      if (navigator.clipboard && window.isSecureContext) {
        navigator.clipboard.writeText(text).then(function () { say("Copied."); }, function () { fallback(source); });
      } else {
        fallback(source);
      }
    });
  });
  var issued = document.getElementById("new-key") || document.getElementById("new-link");
  if (issued) { issued.focus(); }
})();
