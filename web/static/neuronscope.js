// Keyboard navigation between neurons: ← and → (or j and k) follow the previous/next links.
document.addEventListener("keydown", (event) => {
  if (event.target.closest("input, select, textarea") || event.altKey || event.ctrlKey || event.metaKey) return;
  const target = { ArrowLeft: "previous", k: "previous", ArrowRight: "next", j: "next" }[event.key];
  const link = target && document.getElementById(target);
  if (link) window.location.href = link.href;
});
