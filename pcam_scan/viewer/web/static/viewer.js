// One slide: OpenSeadragon with the slide as base layer and the heatmap as a tiled overlay on the
// same Deep Zoom grid, lesion outlines and detections as SVG, reference annotations as an SVG layer
// of their own, a scale bar, the probability under the cursor, the diagnosis.
// `window.pcamViewer` exposes the page's state (tiles loaded, opacity drawn) for tests.
"use strict";

(function () {
  const state = (window.pcamViewer = {
    ready: false,
    error: null,
    slideTilesLoaded: 0,
    heatmapTilesLoaded: 0,
    qcTilesLoaded: 0,
    slideFullyLoaded: false,
    heatmapFullyLoaded: false,
    qcFullyLoaded: false,
    qcDrawn: null,
    opacity: 0.5,
    drawnOpacity: null,
    threshold: 0.5,
    heatmapOn: true,
    lesionsLoaded: false,
    referenceLoaded: false,
    referenceRings: 0,
    readout: null,
    imageToPage: null,
  });

  const slideId = decodeURIComponent(location.pathname.replace(/\/+$/, "").split("/").pop());
  const api = "/api/slides/" + encodeURIComponent(slideId);
  let info = null;
  let viewer = null;
  let slideItem = null;
  let heatmapItem = null;
  let lesions = null;
  const SVG_NS = "http://www.w3.org/2000/svg";

  const $ = (id) => document.getElementById(id);

  function tileSource(kind, ext, query) {
    return {
      width: info.l0_width,
      height: info.l0_height,
      tileSize: info.tile_px,
      tileOverlap: info.overlap_px,
      minLevel: 0,
      maxLevel: info.max_level,
      getTileUrl: (level, x, y) => `${api}/${kind}_files/${level}/${x}_${y}.${ext}?${query}`,
    };
  }

  function heatmapQuery() {
    return `v=${info.version}&threshold=${state.threshold.toFixed(2)}`;
  }

  // -- layers ------------------------------------------------------------------------------------

  function addHeatmap() {
    const old = heatmapItem;
    state.heatmapFullyLoaded = false;
    state.heatmapTilesLoaded = 0;
    viewer.addTiledImage({
      tileSource: tileSource("heatmap", "png", heatmapQuery()),
      opacity: currentOpacity(),
      success: (event) => {
        heatmapItem = event.item;
        heatmapItem.addHandler("fully-loaded-change", (e) => { state.heatmapFullyLoaded = e.fullyLoaded; });
        if (old) viewer.world.removeItem(old);
        markDrawn();
      },
      error: (event) => { state.error = "heatmap: " + event.message; },
    });
  }

  let qcItem = null;

  // `state.qcDrawn` is true once the QC layer is on screen, false once it is off it.
  function toggleQc(on) {
    state.qcDrawn = null;
    state.qcTilesLoaded = 0;
    state.qcFullyLoaded = false;
    if (!on) {
      if (qcItem) viewer.world.removeItem(qcItem);
      qcItem = null;
      afterDraw(() => { state.qcDrawn = false; });
      return;
    }
    viewer.addTiledImage({
      tileSource: tileSource("qc", "png", `v=${info.version}`),
      opacity: 0.8,
      success: (event) => {
        qcItem = event.item;
        qcItem.addHandler("fully-loaded-change", (e) => {
          state.qcFullyLoaded = e.fullyLoaded;
          if (e.fullyLoaded) afterDraw(() => { state.qcDrawn = true; });
        });
      },
      error: (event) => { state.error = "qc: " + event.message; },
    });
  }

  function afterDraw(then) {
    // OpenSeadragon draws in its own animation frame; two frames later the change is on screen.
    viewer.forceRedraw();
    requestAnimationFrame(() => requestAnimationFrame(then));
  }

  function currentOpacity() {
    return state.heatmapOn ? state.opacity : 0;
  }

  function markDrawn() {
    const wanted = currentOpacity();
    afterDraw(() => { state.drawnOpacity = wanted; });
  }

  function applyOpacity() {
    $("opacity-value").textContent = state.opacity.toFixed(2);
    if (heatmapItem) heatmapItem.setOpacity(currentOpacity());
    markDrawn();
  }

  // -- coordinates -------------------------------------------------------------------------------

  // Level-0 image pixels -> pixels of the viewer element, through the slide layer (exact with
  // several layers in the world, unlike viewport.imageToViewerElementCoordinates).
  function imageToElement(x, y) {
    const item = slideItem || heatmapItem;
    const point = item.imageToViewportCoordinates(x, y, true);
    return viewer.viewport.pixelFromPoint(point, true);
  }

  state.imageToPage = (x, y) => {
    const p = imageToElement(x, y);
    const box = $("osd").getBoundingClientRect();
    return { x: box.left + p.x, y: box.top + p.y };
  };

  // -- lesion overlay (SVG) ----------------------------------------------------------------------

  async function loadLesions() {
    state.lesionsLoaded = false;
    const response = await fetch(`${api}/lesions?${heatmapQuery()}`);
    lesions = await response.json();
    if (!response.ok) { state.error = "lesions: " + lesions.error; return; }
    drawLesions();
    listLesions();
    state.lesionsLoaded = true;
  }

  function drawLesions() {
    const group = $("lesion-group");
    group.replaceChildren();
    if (!lesions) return;
    if ($("outlines-on").checked) {
      for (const ring of lesions.outlines_l0_xy) {
        const d = "M" + ring.map((p) => `${p[0]} ${p[1]}`).join("L") + "Z";
        for (const cls of ["outline-halo", "outline"]) {
          const path = document.createElementNS(SVG_NS, "path");
          path.setAttribute("d", d);
          path.setAttribute("class", cls);
          path.setAttribute("fill", "none");
          path.setAttribute("stroke", cls === "outline" ? "#111111" : "#ffffff");
          path.setAttribute("stroke-width", cls === "outline" ? "1.6" : "4");
          path.setAttribute("vector-effect", "non-scaling-stroke");
          group.appendChild(path);
        }
      }
    }
    if ($("detections-on").checked) {
      for (const det of lesions.detections) {
        const circle = document.createElementNS(SVG_NS, "circle");
        circle.setAttribute("cx", det.l0_xy[0]);
        circle.setAttribute("cy", det.l0_xy[1]);
        circle.setAttribute("class", "detection");
        circle.setAttribute("fill", "none");
        circle.setAttribute("stroke", "#ff2d95");
        circle.setAttribute("stroke-width", "2.5");
        circle.setAttribute("vector-effect", "non-scaling-stroke");
        const title = document.createElementNS(SVG_NS, "title");
        title.textContent = `detection, confidence ${det.confidence.toFixed(3)}`;
        circle.appendChild(title);
        group.appendChild(circle);
      }
    }
    placeOverlay();
  }

  function listLesions() {
    const list = $("lesion-list");
    list.replaceChildren();
    const at = lesions.threshold.toFixed(2);
    $("lesion-count").textContent = `(${lesions.region_count} at p \u2265 ${at})`;
    $("lesion-note").textContent = `Outlines and this list follow the threshold slider (now p \u2265 ${at}); the diagnosis does not.`;
    if (lesions.region_count === 0) {
      const item = document.createElement("li");
      item.className = "no-lesion";
      item.textContent = `no lesion at p \u2265 ${at}`;
      list.appendChild(item);
    }
    for (const region of lesions.regions.slice(0, 20)) {
      const item = document.createElement("li");
      item.textContent = `${(region.diameter_um / 1000).toFixed(2)} mm, ${region.area_mm2.toFixed(3)} mm\u00b2, max p ${region.max_prob.toFixed(2)}`;
      item.addEventListener("click", () => zoomTo(region.centroid_l0_xy, region.diameter_um));
      list.appendChild(item);
    }
  }

  function zoomTo(l0_xy, diameter_um) {
    const span_px = Math.max(1.6 * diameter_um / info.slide_mpp_um_px, 400);
    const rect = slideItem.imageToViewportRectangle(l0_xy[0] - span_px / 2, l0_xy[1] - span_px / 2, span_px, span_px);
    viewer.viewport.fitBounds(rect);
  }

  // Keep the SVG (drawn in level-0 pixels) on the image: one transform per frame.
  function placeOverlay() {
    if (!slideItem && !heatmapItem) return;
    const origin = imageToElement(0, 0);
    const unit = imageToElement(1000, 0);
    const scale = (unit.x - origin.x) / 1000;
    for (const id of ["lesion-group", "annotation-group"]) {
      $(id).setAttribute("transform", `translate(${origin.x} ${origin.y}) scale(${scale})`);
    }
    const radius = 9 / scale;
    $("lesion-group").querySelectorAll("circle").forEach((c) => c.setAttribute("r", radius));
    updateScaleBar(scale);
  }

  // -- reference annotations (their own layer and style) -----------------------------------------

  let reference = null;

  async function loadReference() {
    if (!info.reference_annotations) return;
    $("reference-row").hidden = false;
    $("reference-file").textContent = `(${info.reference_annotations})`;
    const response = await fetch(`${api}/reference?v=${info.version}`);
    const body = await response.json();
    if (!response.ok) { state.error = "reference annotations: " + body.error; return; }
    reference = body;
    drawReference();
    state.referenceLoaded = true;
  }

  function drawReference() {
    const group = $("annotation-group");
    group.replaceChildren();
    state.referenceRings = 0;
    if (!reference || !$("reference-on").checked) return;
    const styles = [["tumour_l0_xy", "reference", "#00a8e8", "7 4"], ["exclusions_l0_xy", "reference-exclusion", "#f39c12", "2 3"]];
    for (const [key, cls, colour, dash] of styles) {
      for (const ring of reference[key]) {
        const path = document.createElementNS(SVG_NS, "path");
        path.setAttribute("d", "M" + ring.map((p) => `${p[0]} ${p[1]}`).join("L") + "Z");
        path.setAttribute("class", cls);
        path.setAttribute("fill", "none");
        path.setAttribute("stroke", colour);
        path.setAttribute("stroke-width", "2.2");
        path.setAttribute("stroke-dasharray", dash);
        path.setAttribute("vector-effect", "non-scaling-stroke");
        group.appendChild(path);
        state.referenceRings += 1;
      }
    }
    placeOverlay();
  }

  // -- what lies under the cursor ----------------------------------------------------------------

  let probeBusy = false;
  let probeNext = null;

  function onPointerMove(event) {
    if (!slideItem) return;
    const image = slideItem.viewerElementToImageCoordinates(event.position);
    probeNext = { x: image.x, y: image.y };
    if (!probeBusy) probe();
  }

  async function probe() {
    // one request in flight; the latest position wins
    probeBusy = true;
    while (probeNext) {
      const at = probeNext;
      probeNext = null;
      try {
        const response = await fetch(`${api}/probe?x=${at.x.toFixed(1)}&y=${at.y.toFixed(1)}`);
        const body = await response.json();
        if (response.ok) showReadout(body);
      } catch (err) {
        state.error = "probe: " + err;
      }
    }
    probeBusy = false;
  }

  function showReadout(body) {
    const box = $("readout");
    if (!body.inside) { box.hidden = true; state.readout = null; return; }
    const p = body.probability === null ? "not scanned" : body.probability.toFixed(3);
    const [row, col] = body.cell_rc;
    const [xUm, yUm] = body.um_xy;
    box.textContent = `P(tumour) ${p} \u00b7 cell (${row}, ${col}) \u00b7 x ${xUm.toFixed(1)} \u00b5m, y ${yUm.toFixed(1)} \u00b5m`;
    box.hidden = false;
    state.readout = body;
  }

  // -- scale bar ---------------------------------------------------------------------------------

  function updateScaleBar(screenPxPerL0) {
    const umPerScreenPx = info.slide_mpp_um_px / screenPxPerL0;
    const target = 120 * umPerScreenPx;
    const power = Math.pow(10, Math.floor(Math.log10(target)));
    const nice = [5, 2, 1].map((m) => m * power).find((v) => v <= target) || power;
    $("scale-bar-line").style.width = `${(nice / umPerScreenPx).toFixed(1)}px`;
    $("scale-bar-label").textContent = nice >= 1000 ? `${nice / 1000} mm` : `${nice} \u00b5m`;
  }

  // -- side panel --------------------------------------------------------------------------------

  function showDiagnosis(summary) {
    $("slide-title").textContent = summary.slide_id;
    document.title = `pcam-scan: ${summary.slide_id}`;
    $("slide-state").textContent = summary.state + (summary.message ? `: ${summary.message}` : "");
    const call = $("call");
    const lesionFree = !summary.largest_lesion_um;
    const what = lesionFree ? "no lesion" : summary.category;
    call.textContent = summary.call ? `${summary.call} \u00b7 ${what}` : "no diagnosis";
    call.className = "call " + (summary.call || "");
    const facts = [
      ["Probability", summary.probability, (v) => v.toFixed(3)],
      ["Decision threshold", summary.decision_threshold, (v) => v.toFixed(2)],
      ["Largest lesion", summary.largest_lesion_um, (v) => (v > 0 ? `${(v / 1000).toFixed(2)} mm` : "no lesion")],
      ["Tumour area", summary.tumour_area_mm2, (v) => `${v.toFixed(3)} mm\u00b2 (p \u2265 ${summary.tumour_area_threshold.toFixed(2)})`],
      ["Tissue", summary.tissue_mm2, (v) => `${v.toFixed(1)} mm\u00b2`],
      ["Method", summary.method, (v) => v],
      ["QC", summary.qc_verdict || "not run", (v) => v + (summary.qc_reason ? ` (${summary.qc_reason})` : "")],
      ["Calibration", info && info.calibration, (v) => v],
    ];
    const list = $("diagnosis-facts");
    list.replaceChildren();
    for (const [name, value, format] of facts) {
      if (value === null || value === undefined) continue;
      const dt = document.createElement("dt");
      dt.textContent = name;
      const dd = document.createElement("dd");
      dd.textContent = format(value);
      list.append(dt, dd);
    }
    $("diagnosis-note").textContent = summary.call
      ? `Made at decision threshold ${summary.decision_threshold.toFixed(2)}; lesions measured at p \u2265 ${info.lesion_threshold.toFixed(2)}, whatever the slider says.`
      : "";
  }

  function drawColourBar() {
    const canvas = $("colour-bar");
    const ctx = canvas.getContext("2d");
    const cut = Math.round(state.threshold * 255);
    info.colormap_lut.forEach(([r, g, b], i) => {
      ctx.fillStyle = i < cut ? "#d5d9de" : `rgb(${r},${g},${b})`;
      ctx.fillRect(i, 0, 1, canvas.height);
    });
  }

  // -- set-up ------------------------------------------------------------------------------------

  function wireControls() {
    $("opacity").value = state.opacity;
    $("threshold").value = state.threshold;
    $("threshold-value").textContent = state.threshold.toFixed(2);
    $("opacity").addEventListener("input", (e) => { state.opacity = Number(e.target.value); applyOpacity(); });
    $("heatmap-on").addEventListener("change", (e) => { state.heatmapOn = e.target.checked; applyOpacity(); });
    $("qc-on").addEventListener("change", (e) => toggleQc(e.target.checked));
    $("threshold").addEventListener("input", (e) => {
      state.threshold = Number(e.target.value);
      $("threshold-value").textContent = state.threshold.toFixed(2);
      drawColourBar();
    });
    $("threshold").addEventListener("change", () => { addHeatmap(); loadLesions(); });
    $("outlines-on").addEventListener("change", drawLesions);
    $("detections-on").addEventListener("change", drawLesions);
    $("reference-on").addEventListener("change", drawReference);
  }

  function countTiles(event) {
    if (event.tiledImage === slideItem) state.slideTilesLoaded += 1;
    else if (event.tiledImage === heatmapItem) state.heatmapTilesLoaded += 1;
    else if (event.tiledImage === qcItem) state.qcTilesLoaded += 1;
    $("tile-status").textContent = `tiles loaded: slide ${state.slideTilesLoaded}, heatmap ${state.heatmapTilesLoaded}`;
  }

  async function start() {
    const response = await fetch(api);
    info = await response.json();
    if (!response.ok) throw new Error(info.error || response.statusText);
    state.threshold = info.default_threshold;
    showDiagnosis(info.summary);
    if (!info.slide_available) {
      $("slide-problem").textContent = "Slide image unavailable: " + info.slide_problem;
      $("slide-problem").hidden = false;
    }
    drawColourBar();
    wireControls();
    viewer = OpenSeadragon({
      element: $("osd"),
      prefixUrl: "/vendor/openseadragon/images/",
      tileSources: tileSource("slide", "jpeg", `v=${info.version}`),
      drawer: "canvas",
      showNavigator: true,
      navigatorId: "navigator", // its own element above the SVG layer: outlines stay off the minimap
      maxZoomPixelRatio: 4,
      visibilityRatio: 0.5,
      imageSmoothingEnabled: false,
      crossOriginPolicy: false,
    });
    viewer.addHandler("tile-loaded", countTiles);
    for (const name of ["animation", "update-viewport", "resize"]) viewer.addHandler(name, placeOverlay);
    new OpenSeadragon.MouseTracker({
      element: viewer.element,
      moveHandler: onPointerMove,
      leaveHandler: () => { $("readout").hidden = true; state.readout = null; },
    });
    viewer.addHandler("open", () => {
      slideItem = viewer.world.getItemAt(0);
      slideItem.addHandler("fully-loaded-change", (e) => { state.slideFullyLoaded = e.fullyLoaded; });
      addHeatmap();
      loadLesions();
      loadReference();
      state.ready = true;
    });
    viewer.addHandler("open-failed", (e) => { state.error = "slide: " + e.message; });
  }

  document.addEventListener("DOMContentLoaded", () => {
    start().catch((err) => {
      state.error = String(err.message || err);
      $("slide-problem").textContent = state.error;
      $("slide-problem").hidden = false;
    });
  });
})();
