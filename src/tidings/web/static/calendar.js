// Dragging a draft or rejected post to another day of the calendar (people who may edit).
(function () {
  var form = document.getElementById("cal-drop");
  if (!form) return;
  var dragged = null;
  function el(node) { return node && node.nodeType === 1 ? node : node && node.parentElement; }
  function clear() {
    document.querySelectorAll(".cal-drop-here").forEach(function (d) { d.classList.remove("cal-drop-here"); });
  }
  function dayOf(e) { var t = el(e.target); return dragged && t && t.closest(".cal-day"); }
  document.addEventListener("dragstart", function (e) {
    var t = el(e.target), item = t && t.closest("[data-post]");
    if (!item) return;
    dragged = item;
    item.classList.add("cal-dragging");
    e.dataTransfer.effectAllowed = "move";
    e.dataTransfer.setData("text/plain", item.dataset.post);
  });
  document.addEventListener("dragend", function () {
    if (dragged) dragged.classList.remove("cal-dragging");
    dragged = null;
    clear();
  });
  document.addEventListener("dragover", function (e) {
    var day = dayOf(e);
    if (!day) return;
    e.preventDefault();
    e.dataTransfer.dropEffect = "move";
    if (!day.classList.contains("cal-drop-here")) { clear(); day.classList.add("cal-drop-here"); }
  });
  document.addEventListener("drop", function (e) {
    var day = dayOf(e);
    if (!day) return;
    e.preventDefault();
    if (day.dataset.day === dragged.dataset.day) { clear(); return; }
    form.elements.post_id.value = dragged.dataset.post;
    form.elements.revision.value = dragged.dataset.revision;
    form.elements.day.value = day.dataset.day;
    day.classList.add("cal-busy");
    form.submit();
  });
})();
