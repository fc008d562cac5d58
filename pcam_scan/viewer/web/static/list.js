// Slide list: one row per slide of the store, sortable by any column; with a patients file
// (`pcam-scan view --patients FILE`) the rows are grouped under each patient's pN stage.
"use strict";

(function () {
  const CATEGORY_ORDER = { macro: 3, micro: 2, itc: 1, negative: 0 };
  let slides = [];
  let patients = null;  // [{patient, stage, at_least, at_most, slides, unassessed}] or null
  let sortKey = "probability";
  let descending = true;

  function fmt(value, digits) {
    return value === null || value === undefined ? "\u2013" : Number(value).toFixed(digits);
  }

  function sortValue(slide, key, type) {
    const value = slide[key];
    if (value === null || value === undefined) return null;
    if (type === "category") return CATEGORY_ORDER[value] ?? -1;
    return value;
  }

  function compare(a, b, key, type) {
    const va = sortValue(a, key, type);
    const vb = sortValue(b, key, type);
    if (va === vb) return a.slide_id.localeCompare(b.slide_id);
    if (va === null) return 1;   // unknown values last, whatever the direction
    if (vb === null) return -1;
    const order = typeof va === "number" ? va - vb : String(va).localeCompare(String(vb));
    return descending ? -order : order;
  }

  function cell(row, text, className) {
    const td = document.createElement("td");
    if (className) td.className = className;
    if (text instanceof Node) td.appendChild(text); else td.textContent = text;
    row.appendChild(td);
  }

  function badge(text, kind) {
    const span = document.createElement("span");
    span.className = "badge " + (kind || "");
    span.textContent = text;
    return span;
  }

  function render() {
    const header = document.querySelector(`th[data-key="${sortKey}"]`);
    const type = header ? header.dataset.type : "text";
    slides.sort((a, b) => compare(a, b, sortKey, type));
    document.querySelectorAll("th").forEach((th) => {
      th.classList.toggle("sorted-asc", th.dataset.key === sortKey && !descending);
      th.classList.toggle("sorted-desc", th.dataset.key === sortKey && descending);
    });
    const body = document.querySelector("#slides tbody");
    body.replaceChildren();
    if (patients === null) {
      slides.forEach((slide) => body.appendChild(slideRow(slide)));
      return;
    }
    const byPatient = new Map(patients.map((p) => [p.patient, []]));
    const unlisted = [];
    for (const slide of slides) {
      const group = slide.patient === null || slide.patient === undefined ? null : byPatient.get(slide.patient);
      if (group) group.push(slide); else unlisted.push(slide);
    }
    for (const patient of patients) {
      body.appendChild(patientRow(patient));
      byPatient.get(patient.patient).forEach((slide) => body.appendChild(slideRow(slide)));
    }
    if (unlisted.length) {
      body.appendChild(groupRow("Slides of no listed patient", ""));
      unlisted.forEach((slide) => body.appendChild(slideRow(slide)));
    }
  }

  function groupRow(title, detail) {
    const row = document.createElement("tr");
    row.className = "patient";
    const td = document.createElement("td");
    td.colSpan = 8;
    const strong = document.createElement("strong");
    strong.textContent = title;
    td.appendChild(strong);
    if (detail) td.appendChild(document.createTextNode(" \u2014 " + detail));
    row.appendChild(td);
    return row;
  }

  function patientRow(patient) {
    const stage = patient.stage === "pN?"
      ? `pN? (incomplete: at least ${patient.at_least}, at most ${patient.at_most})`
      : patient.stage;
    const missing = patient.unassessed.length ? `; not assessable: ${patient.unassessed.join(", ")}` : "";
    const row = groupRow(`${patient.patient}: ${stage}`, `${patient.slides.length} nodes${missing}`);
    row.dataset.patient = patient.patient;
    return row;
  }

  function slideRow(slide) {
    {
      const row = document.createElement("tr");
      row.dataset.slideId = slide.slide_id;
      const link = document.createElement("a");
      link.href = "/slides/" + encodeURIComponent(slide.slide_id);
      link.textContent = slide.slide_id;
      cell(row, link);
      const state = badge(slide.state || "unknown", slide.state);
      if (slide.message) state.title = slide.message;
      cell(row, state);
      cell(row, fmt(slide.probability, 3), "num");
      cell(row, slide.call ? badge(slide.call, slide.call) : "\u2013");
      cell(row, slide.category || "\u2013");
      cell(row, slide.largest_lesion_um ? fmt(slide.largest_lesion_um / 1000, 2) : "\u2013", "num");
      cell(row, fmt(slide.tumour_area_mm2, 3), "num");
      cell(row, fmt(slide.tissue_mm2, 1), "num");
      const qc = badge(slide.qc_verdict || "not run", "qc-" + (slide.qc_verdict || "not-run").replace(/ /g, "-"));
      if (slide.qc_reason) qc.title = slide.qc_reason;
      cell(row, qc);
      return row;
    }
  }

  async function load() {
    const status = document.getElementById("list-status");
    try {
      const response = await fetch("/api/slides");
      const data = await response.json();
      if (!response.ok) throw new Error(data.error || response.statusText);
      slides = data.slides;
      patients = data.patients || null;
      document.getElementById("store").textContent = data.store;
      status.textContent = `${slides.length} slide${slides.length === 1 ? "" : "s"}`;
      document.getElementById("slides").hidden = false;
      render();
    } catch (err) {
      status.textContent = "Cannot load the slide list: " + err.message;
    }
  }

  document.addEventListener("DOMContentLoaded", () => {
    document.querySelectorAll("th[data-key]").forEach((th) => {
      th.addEventListener("click", () => {
        if (sortKey === th.dataset.key) descending = !descending;
        else { sortKey = th.dataset.key; descending = th.dataset.type !== "text"; }
        render();
      });
    });
    load();
  });
})();
