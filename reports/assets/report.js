// lockbench report: draws the embedded figures and makes anomaly links zoom the timeline.
// Figures are JSON in non-executed script elements naming their target div, so the
// page stays one self-contained file. window.lockbenchReady is true once every figure is drawn.
(function () {
  "use strict";
  window.lockbenchReady = false;
  window.lockbenchErrors = [];

  function drawAll() {
    var specs = document.querySelectorAll("script[data-figure-for]");
    var pending = [];
    specs.forEach(function (node) {
      var target = document.getElementById(node.getAttribute("data-figure-for"));
      var spec = JSON.parse(node.textContent);
      var config = spec.config || {};
      pending.push(
        Plotly.newPlot(target, spec.data, spec.layout, config).then(function (div) {
          watchTokenLabels(div);
          return div;
        }).catch(function (err) {
          window.lockbenchErrors.push(String(err));
          throw err;
        })
      );
    });
    return Promise.all(pending);
  }

  // Token labels on lock charts: drawn only for the holds in view, and only while at most
  // MAX_LABELS of them are (thousands of SVG text nodes made every zoom take seconds).
  var MAX_LABELS = 300;

  function labelsInView(all, range) {
    var picked = { x: [], y: [], text: [] };
    for (var i = 0; i < all.x.length; i += 1) {
      if (all.x[i] >= range[0] && all.x[i] <= range[1]) {
        if (picked.x.length === MAX_LABELS) {
          return null;
        }
        picked.x.push(all.x[i]);
        picked.y.push(all.y[i]);
        picked.text.push(all.text[i]);
      }
    }
    return picked;
  }

  // Typed arrays as the figure JSON embeds them ({dtype, bdata: base64}), decoded.
  var TYPED = {
    f4: Float32Array, f8: Float64Array, i1: Int8Array, i2: Int16Array, i4: Int32Array,
    u1: Uint8Array, u2: Uint16Array, u4: Uint32Array,
  };

  function decoded(values) {
    if (!values || Array.isArray(values) || !values.bdata || !TYPED[values.dtype]) {
      return values || [];
    }
    var binary = atob(values.bdata);
    var bytes = new Uint8Array(binary.length);
    for (var i = 0; i < binary.length; i += 1) {
      bytes[i] = binary.charCodeAt(i);
    }
    return new TYPED[values.dtype](bytes.buffer);
  }

  function watchTokenLabels(div) {
    var labels = [];
    (div.data || []).forEach(function (trace, i) {
      if (trace.meta === "token-labels") {
        // every label, kept here; the trace itself then holds only those in view
        labels.push({
          index: i,
          all: { x: decoded(trace.x), y: decoded(trace.y), text: decoded(trace.text) },
        });
      }
    });
    if (!labels.length) {
      return;
    }
    div.on("plotly_relayout", function () {
      var range = div._fullLayout.xaxis.range;
      labels.forEach(function (label) {
        var picked = labelsInView(label.all, range);
        var shown = div.data[label.index].visible !== false;
        if (picked) {
          Plotly.restyle(
            div,
            { x: [picked.x], y: [picked.y], text: [picked.text], visible: true },
            [label.index]
          );
        } else if (shown) {
          Plotly.restyle(div, { visible: false }, [label.index]);
        }
      });
    });
  }

  function zoomTimeline(start, end, anomaly) {
    var timeline = document.getElementById("fig-timeline");
    if (!timeline || !timeline.layout) {
      return;
    }
    var pad = Math.max((end - start) * 0.5, 0.05);
    var from = Math.max(start - pad, Math.min(0, start));
    Plotly.relayout(timeline, { "xaxis.range": [from, end + pad] });
    // show the selected anomaly's op markers; hide the others' when they are not all shown
    var mine = [];
    var others = [];
    timeline.data.forEach(function (trace, i) {
      if (typeof trace.meta === "string" && trace.meta.indexOf("anomaly-") === 0) {
        (trace.meta === anomaly ? mine : others).push(i);
      }
    });
    var allShown = others.every(function (i) { return timeline.data[i].visible === true; });
    if (mine.length) {
      Plotly.restyle(timeline, { visible: true }, mine);
    }
    if (others.length && !allShown) {
      Plotly.restyle(timeline, { visible: "legendonly" }, others);
    }
  }

  function wireAnomalyLinks() {
    document.querySelectorAll("a.jump").forEach(function (link) {
      link.addEventListener("click", function () {
        var start = parseFloat(link.getAttribute("data-start"));
        var end = parseFloat(link.getAttribute("data-end"));
        document.querySelectorAll("li.anomaly.selected").forEach(function (li) {
          li.classList.remove("selected");
        });
        var item = link.closest("li.anomaly");
        if (item) {
          item.classList.add("selected");
        }
        zoomTimeline(start, end, item ? item.id : "");
        // the href (#timeline) scrolls the timeline into view
      });
    });
    document.querySelectorAll("button.reset-zoom").forEach(function (button) {
      button.addEventListener("click", function () {
        var target = document.getElementById(button.getAttribute("data-target"));
        if (target) {
          Plotly.relayout(target, { "xaxis.autorange": true });
        }
      });
    });
  }

  function filterChecks() {
    var box = document.getElementById("only-failing");
    if (!box) {
      return;
    }
    box.addEventListener("change", function () {
      document.querySelectorAll("tr.check.verdict-valid").forEach(function (row) {
        row.style.display = box.checked ? "none" : "";
      });
    });
  }

  document.addEventListener("DOMContentLoaded", function () {
    wireAnomalyLinks();
    filterChecks();
    drawAll().then(
      function () {
        window.lockbenchReady = true;
        var hash = window.location.hash;
        if (hash.indexOf("#anomaly-") === 0) {
          var link = document.querySelector(hash + " a.jump");
          if (link) {
            link.click();
          }
        }
      },
      function () {
        window.lockbenchReady = true;
      }
    );
  });
})();
