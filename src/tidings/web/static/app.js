// Behaviour every page shares, kept out of the markup: the pages' Content-Security-Policy
// runs no inline handler.
(function () {
  "use strict";
  // An image marked data-hide-broken (a feed's media) disappears when it cannot load,
  // also inside parts that htmx swaps in later: "error" does not bubble, so it is caught.
  function hideIfBroken(img) { img.hidden = true; }
  document.addEventListener("error", function (e) {
    var t = e.target;
    if (t && t.tagName === "IMG" && t.hasAttribute("data-hide-broken")) { hideIfBroken(t); }
  }, true);
  document.querySelectorAll("img[data-hide-broken]").forEach(function (img) {
    if (img.complete && img.naturalWidth === 0) { hideIfBroken(img); }
  });
})();
