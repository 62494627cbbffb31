// Keyboard navigation between neurons: ← and → (or j and k) follow the previous/next links.
document.addEventListener("keydown", (event) => {
  if (event.target.closest("input, select, textarea") || event.altKey || event.ctrlKey || event.metaKey) return;
  const target = { ArrowLeft: "previous", k: "previous", ArrowRight: "next", j: "next" }[event.key];
  const link = target && document.getElementById(target);
  if (link) window.location.href = link.href;
});

// Pointing at a pixel of a decomposed image (or of its composite) lists the neurons that fire
// there, in the image's own pixels; a click pins the list, so the pointer can move to it, and a
// second click lets go. At most one request is in flight: a move during it asks again after.
const pixelLists = { pinned: false, busy: false, pending: null };

function sendPixel(url) {
  pixelLists.busy = true;
  htmx.ajax("GET", url, "#pixel").finally(() => {
    const next = pixelLists.pending;
    pixelLists.busy = false;
    pixelLists.pending = null;
    if (next) sendPixel(next);
  });
}

function askPixel(image, event) {
  const x = event.offsetX * image.dataset.width / image.clientWidth;
  const y = event.offsetY * image.dataset.height / image.clientHeight;
  const url = image.dataset.at + "&x=" + x.toFixed(1) + "&y=" + y.toFixed(1);
  if (pixelLists.busy) pixelLists.pending = url;
  else sendPixel(url);
}

document.addEventListener("mousemove", (event) => {
  const image = event.target.closest(".pixel-map");
  if (image && window.htmx && !pixelLists.pinned) askPixel(image, event);
});

document.addEventListener("click", (event) => {
  const image = event.target.closest(".pixel-map");
  if (!image || !window.htmx) return;
  pixelLists.pinned = !pixelLists.pinned;
  document.querySelectorAll(".pixel-map").forEach((map) => map.classList.toggle("pinned", pixelLists.pinned));
  askPixel(image, event);
});
