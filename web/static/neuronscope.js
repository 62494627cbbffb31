// Keyboard navigation between neurons: ← and → (or j and k) follow the previous/next links.
document.addEventListener("keydown", (event) => {
  if (event.target.closest("input, select, textarea") || event.altKey || event.ctrlKey || event.metaKey) return;
  const target = { ArrowLeft: "previous", k: "previous", ArrowRight: "next", j: "next" }[event.key];
  const link = target && document.getElementById(target);
  if (link) window.location.href = link.href;
});

// A click on a decomposed image asks which neurons fire at that pixel (the image's own pixels).
document.addEventListener("click", (event) => {
  const image = event.target.closest("#original");
  if (!image || !window.htmx) return;
  const x = event.offsetX * image.dataset.width / image.clientWidth;
  const y = event.offsetY * image.dataset.height / image.clientHeight;
  htmx.ajax("GET", image.dataset.at + "&x=" + x.toFixed(1) + "&y=" + y.toFixed(1), "#pixel");
});
