// A static copy's tables sorted and filtered in the browser (`neuronscope export`): the dashboard
// does both on the server, through the URL; a copy opened from disk has no server to ask.
"use strict";

function cellKey(row, column) {
  const text = (row.cells[column] ? row.cells[column].innerText : "").trim();
  if (text === "" || text === "—") return null;
  const number = parseFloat(text.replace("−", "-"));
  return Number.isNaN(number) ? text.toLowerCase() : number;
}

function compareKeys(a, b) {
  if (typeof a === typeof b) return a < b ? -1 : a > b ? 1 : 0;
  return typeof a === "number" ? -1 : 1; // numbers before text
}

function sortBy(table, header, column) {
  const body = table.tBodies[0];
  const order = header.dataset.order; // a first click sorts largest first; again, the other way
  const descending = order === undefined ? column > 0 : order === "asc";
  const rows = Array.from(body.rows);
  rows.sort((a, b) => {
    const x = cellKey(a, column), y = cellKey(b, column);
    if (x === null || y === null) return (x === null) - (y === null); // empty cells last
    return compareKeys(x, y) * (descending ? -1 : 1);
  });
  rows.forEach((row) => body.appendChild(row));
  for (const other of header.parentElement.cells) delete other.dataset.order;
  header.dataset.order = descending ? "desc" : "asc";
}

function addFilter(table) {
  const box = document.createElement("input");
  box.type = "search";
  box.className = "table-filter";
  box.placeholder = "filter rows";
  box.setAttribute("aria-label", "show only the rows that contain these words");
  box.addEventListener("input", () => {
    const words = box.value.trim().toLowerCase();
    for (const row of table.tBodies[0].rows) {
      row.hidden = words !== "" && !row.innerText.toLowerCase().includes(words);
    }
  });
  table.parentElement.insertBefore(box, table);
}

for (const table of document.querySelectorAll("table.data")) {
  if (!table.tHead || !table.tBodies.length || table.tBodies[0].rows.length < 2) continue;
  Array.from(table.tHead.rows[0].cells).forEach((header, column) => {
    header.classList.add("sortable");
    header.tabIndex = 0;
    header.title = "sort by this column (again: the other way)";
    header.addEventListener("click", () => sortBy(table, header, column));
    header.addEventListener("keydown", (event) => {
      if (event.key === "Enter") sortBy(table, header, column);
    });
  });
  if (table.classList.contains("neurons") || table.tBodies[0].rows.length > 8) addFilter(table);
}
