// The page for one patient: a form built from GET /model (the feature schema), POST /predict with the
// months 1-60 and the contrast between treatments, and what the answer means, drawn without any
// library: the risk curves, the risks at 24 and 48 months, a waterfall of the SHAP values per outcome.
"use strict";

(function () {
  const TOKEN_KEY = "autorisk.token";
  const MONTHS = 60;
  const SUMMARY_MONTHS = [24, 48];
  const SVG = "http://www.w3.org/2000/svg";
  const OUTCOME_NAMES = { thyroid: "Thyroid disorder", itp: "ITP (immune thrombocytopenic purpura)" };
  const SHORT_NAMES = { thyroid: "Thyroid disorder", itp: "ITP" };
  const TREATMENTS = ["alemtuzumab", "interferon_beta_1a"];
  const NUMBER = /^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$/;

  const $ = (id) => document.getElementById(id);
  let model = null;  // the answer of GET /model
  let shown = null;  // {patient, prediction, answer} of the last submit

  // ---------------------------------------------------------------- helpers

  function el(tag, attributes, ...children) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(attributes || {})) {
      if (value === false || value === null || value === undefined) continue;
      if (key === "text") node.textContent = value;
      else node.setAttribute(key, value === true ? "" : value);
    }
    for (const child of children) node.append(child);
    return node;
  }

  function svg(tag, attributes, text) {
    const node = document.createElementNS(SVG, tag);
    for (const [key, value] of Object.entries(attributes || {})) node.setAttribute(key, value);
    if (text !== undefined) node.textContent = text;
    return node;
  }

  // A category value as people read it, from GET /model (the schema's labels).
  function valueName(value) {
    for (const f of model ? model.features : []) {
      if (f.category_labels && value in f.category_labels) return f.category_labels[value];
    }
    return String(value);
  }

  function percent(risk) {
    const p = 100 * risk;
    if (p >= 1) return p.toFixed(1) + "%";
    if (p >= 0.1) return p.toFixed(2) + "%";
    return "<0.1%";
  }

  function points(difference) {
    const p = 100 * difference;
    const text = Math.abs(p) >= 0.1 ? Math.abs(p).toFixed(1) : Math.abs(p).toFixed(2);
    const sign = text === "0.00" ? "±" : p > 0 ? "+" : "−";
    return sign + text + " pts";
  }

  function signed(value, digits) {
    return (value < 0 ? "−" : "+") + Math.abs(value).toFixed(digits);
  }

  function feature(name) {
    return model.features.find((f) => f.name === name);
  }

  function label(name) {
    const f = feature(name);
    return f ? f.label : name;
  }

  function auth() {
    const token = sessionStorage.getItem(TOKEN_KEY);
    return token ? { Authorization: "Bearer " + token } : {};
  }

  function say(message) {
    $("status").textContent = message;
  }

  // ---------------------------------------------------------------- the token and the model

  function askToken(message) {
    $("patient-form").hidden = true;
    $("results").hidden = true;
    $("token-form").hidden = false;
    $("token-error").textContent = message || "";
    if (message) $("token").setAttribute("aria-invalid", "true");
    else $("token").removeAttribute("aria-invalid");
    $("model-line").textContent = "Model: this server needs its API token.";
    $("token").focus();
  }

  async function start() {
    let response;
    try {
      response = await fetch("model", { headers: auth() });
    } catch (error) {
      say("The server could not be reached (" + error.message + "). Reload the page to try again.");
      return;
    }
    if (response.status === 401) {
      askToken(sessionStorage.getItem(TOKEN_KEY) ? "The server did not accept this token." : "");
      return;
    }
    if (!response.ok) {
      say("The server answered " + response.status + " to GET /model: " + (await response.text()));
      return;
    }
    model = await response.json();
    $("model-line").textContent = "Model: " + model.name + " version " + model.version +
      (model.family ? " (" + model.family + ")" : "") + ", MLflow run " + model.run_id + ".";
    $("token-form").hidden = true;
    buildForm();
    $("patient-form").hidden = false;
    fillFromFragment();
  }

  $("token-form").addEventListener("submit", function (event) {
    event.preventDefault();
    const token = $("token").value.trim();
    if (!token) {
      $("token-error").textContent = "Enter the API token.";
      $("token").setAttribute("aria-invalid", "true");
      $("token").focus();
      return;
    }
    sessionStorage.setItem(TOKEN_KEY, token);
    $("token").value = "";
    start();
  });

  // ---------------------------------------------------------------- the form, from the schema

  function number(value) {
    return Number(value).toLocaleString("en");
  }

  function rangeText(range, unit) {
    const low = range.low_inclusive ? number(range.low) : "more than " + number(range.low);
    return low + (range.low_inclusive ? "–" : " up to ") + number(range.high) + (unit ? " " + unit : "");
  }

  function hintText(f) {
    const parts = [];
    if (f.possible) parts.push("Possible: " + rangeText(f.possible, f.unit) + ".");
    if (f.training_by_assay) {
      parts.push("Trained on: " + Object.entries(f.training_by_assay)
        .map(([kit, range]) => rangeText(range, f.unit) + " with the " + valueName(kit)).join("; ") + ".");
    } else if (f.training) {
      parts.push("Trained on: " + rangeText(f.training, f.unit) + ".");
    }
    // The description, unless it only repeats the label.
    if (f.description.replace(/\.$/, "").toLowerCase() !== f.label.toLowerCase()) parts.push(f.description);
    return parts.join(" ");
  }

  function buildForm() {
    const container = $("fields");
    container.replaceChildren();
    for (const f of model.features) {
      const id = "f-" + f.name;
      const described = "h-" + f.name + " e-" + f.name;
      let input;
      if (f.kind === "number" || f.kind === "integer") {
        input = el("input", {
          id, name: f.name, type: "text", inputmode: f.kind === "integer" ? "numeric" : "decimal",
          autocomplete: "off", "aria-describedby": described, "aria-required": f.required ? "true" : null,
        });
      } else {
        input = el("select", { id, name: f.name, "aria-describedby": described,
                               "aria-required": f.required ? "true" : null });
        const choices = f.kind === "boolean" ? [["true", "yes"], ["false", "no"]]
          : f.categories.map((c) => [c, f.category_details && f.category_details[c]
            ? f.category_details[c].printed_name : valueName(c)]);
        if (!f.default) {
          input.append(el("option", { value: "", text: f.required ? "choose…" : "not known" }));
        }
        for (const [value, text] of choices) {
          input.append(el("option", { value, text, selected: value === f.default }));
        }
      }
      const title = el("label", { for: id, text: f.label + " " });
      if (f.required) title.append(el("span", { class: "required-mark", text: "required" }));
      const row = el("div", { class: "input-row" }, input);
      if (f.unit) row.append(el("span", { class: "unit", text: f.unit }));
      const parts = [title, row, el("p", { class: "hint", id: "h-" + f.name, text: hintText(f) })];
      if (f.category_details) {
        parts.push(el("p", { class: "hint evidence", id: "evidence-" + f.name, "aria-live": "polite" }));
        input.addEventListener("change", () => showEvidence(f));
      }
      container.append(el("div", { class: "field", id: "field-" + f.name }, ...parts,
        el("p", { class: "field-error", id: "e-" + f.name })));
    }
  }

  // The evidence for the chosen kit, in one line under the list.
  function showEvidence(f) {
    const chosen = f.category_details[$("f-" + f.name).value];
    $("evidence-" + f.name).textContent = chosen ? "Evidence for this kit: " + chosen.evidence : "";
  }

  // Values in the address's fragment (a CDS Hooks card's link) fill the form and ask for the risks at once; the
  // fragment never leaves the browser.
  function fillFromFragment() {
    const values = new URLSearchParams(location.hash.slice(1));
    let filled = 0;
    for (const f of model.features) {
      if (values.has(f.name)) {
        $("f-" + f.name).value = values.get(f.name);
        if (f.category_details) showEvidence(f);
        filled += 1;
      }
    }
    if (values.has("month")) $("explain-month").value = values.get("month");
    if (filled) $("patient-form").requestSubmit();
  }

  // Reads the form into a patient of POST /predict; returns [patient, errors by field].
  function readForm() {
    const patient = {};
    const errors = {};
    for (const f of model.features) {
      const raw = $("f-" + f.name).value.trim();
      if (raw === "") {
        if (f.required) errors[f.name] = f.label + ": required.";
        continue;
      }
      if (f.kind === "boolean") {
        patient[f.name] = raw === "true";
      } else if (f.kind === "category") {
        patient[f.name] = raw;
      } else if (!NUMBER.test(raw)) {
        errors[f.name] = f.label + ": “" + raw + "” is not a number" +
          (/^\d+,\d+$/.test(raw) ? " (write decimals with a point, e.g. 2.5)." : ".");
      } else {
        const value = Number(raw);
        const range = f.possible;
        if (f.kind === "integer" && !Number.isInteger(value)) {
          errors[f.name] = f.label + ": a whole number, please.";
        } else if (range && (value > range.high || (range.low_inclusive ? value < range.low : value <= range.low))) {
          errors[f.name] = f.label + ": " + raw + " is not possible; possible values are " + rangeText(range, f.unit) + ".";
        } else {
          patient[f.name] = value;
        }
      }
    }
    if (!errors.disease_duration_years && !errors.age_years && patient.disease_duration_years > patient.age_years) {
      errors.disease_duration_years = label("disease_duration_years") + ": cannot exceed the age.";
    }
    if (patient.il21_pg_ml !== undefined && patient.il21_assay === undefined) {
      errors.il21_assay = label("il21_assay") + ": required when IL-21 is given (the kit sets its scale).";
    }
    return [patient, errors];
  }

  function showErrors(errors) {
    for (const f of model.features) {
      $("e-" + f.name).textContent = errors[f.name] || "";
      const input = $("f-" + f.name);
      if (errors[f.name]) input.setAttribute("aria-invalid", "true");
      else input.removeAttribute("aria-invalid");
    }
    const list = $("error-list");
    list.replaceChildren();
    for (const [name, message] of Object.entries(errors)) {
      const target = feature(name) ? "#f-" + name : "#patient-form";
      list.append(el("li", {}, el("a", { href: target, text: message })));
    }
    const summary = $("error-summary");
    summary.hidden = Object.keys(errors).length === 0;
    if (!summary.hidden) summary.focus();
  }

  $("error-list").addEventListener("click", function (event) {
    const link = event.target.closest("a");
    if (!link) return;
    const target = document.querySelector(link.getAttribute("href"));
    if (target) {
      event.preventDefault();
      target.focus();
    }
  });

  // A 4xx answer names the field: in "detail" (the request model's checks: loc and msg) or at the
  // start of the message (the shared validation rules: "<field>: ...").
  function serverErrors(answer) {
    const errors = {};
    for (const item of answer.detail || []) {
      const where = (item.loc || []).filter((part) => typeof part === "string");
      const message = String(item.msg || "").replace(/^Value error, /, "");
      const named = /^(\w+): (.*)$/.exec(message);
      const name = feature(where[where.length - 1]) ? where[where.length - 1] : named && feature(named[1]) ? named[1] : "form";
      const text = named && named[1] === name ? named[2] : message;
      errors[name] = (name === "form" ? "" : label(name) + ": ") + text;
    }
    if (!Object.keys(errors).length) {
      const text = String(answer.error || answer);
      const named = /(\w+): /.exec(text);
      errors[named && feature(named[1]) ? named[1] : "form"] = text;
    }
    return errors;
  }

  // ---------------------------------------------------------------- submit

  $("patient-form").addEventListener("reset", function () {
    showErrors({});
    $("results").hidden = true;
    shown = null;
    say("The form is cleared.");
  });

  $("patient-form").addEventListener("submit", async function (event) {
    event.preventDefault();
    performance.clearMarks();
    performance.clearMeasures();
    performance.mark("autorisk-submit");
    const [patient, errors] = readForm();
    showErrors(errors);
    if (Object.keys(errors).length) {
      say("");
      return;
    }
    const button = $("submit");
    button.disabled = true;
    say("Asking the model…");
    const months = Array.from({ length: MONTHS }, (_, i) => i + 1);
    let response;
    try {
      response = await fetch("predict", {
        method: "POST",
        headers: Object.assign({ "Content-Type": "application/json" }, auth()),
        body: JSON.stringify({ patients: [patient], horizons_months: months, contrast: true }),
      });
    } catch (error) {
      say("The server could not be reached (" + error.message + ").");
      button.disabled = false;
      return;
    }
    button.disabled = false;
    if (response.status === 401) {
      askToken("The server did not accept the token.");
      return;
    }
    if (!response.ok) {
      const text = await response.text();
      let answer = text;
      try {
        answer = JSON.parse(text);
      } catch (ignored) {
        // Not JSON: the text itself is the message.
      }
      if (response.status < 500) {
        showErrors(serverErrors(answer));
        say("");
      } else {
        say("The server failed (" + response.status + "): " + (answer.error || text));
      }
      return;
    }
    const answer = await response.json();
    shown = { patient, answer, prediction: answer.predictions[0] };
    render();
    $("results-heading").focus();
    say("The risks are shown below the form.");
    // Two frames: the first is the one the new results are painted in.
    requestAnimationFrame(() => requestAnimationFrame(() => {
      performance.mark("autorisk-drawn");
      const measure = performance.measure("autorisk-submit-to-drawn", "autorisk-submit", "autorisk-drawn");
      document.body.dataset.drawnMs = measure.duration.toFixed(1);
    }));
  });

  // ---------------------------------------------------------------- results

  function render() {
    const { prediction, answer } = shown;
    const treatment = prediction.treatment;
    $("results").hidden = false;
    $("results-heading").textContent = "Risks for this patient, on " + valueName(treatment) + " (under consideration)";
    $("results-model").textContent = "Model " + answer.model.name + " version " + answer.model.version +
      ", MLflow run " + answer.model.run_id + ". " + answer.notice;
    $("inputs-line").textContent = "For this patient: " + model.features
      .filter((f) => f.model_input && displayValue(f.name) !== null)
      .map((f) => label(f.name) + " " + displayValue(f.name)).join("; ") + ".";
    $("scale-name").textContent = prediction.outcomes[Object.keys(prediction.outcomes)[0]].risks[0].scale;
    renderSummary(prediction);
    renderCurves(prediction);
    renderWaterfalls();
    renderWarnings(prediction);
  }

  function extrapolatedAfter(treatment) {
    return model.follow_up_months[treatment];
  }

  function cell(risk, month, treatment, bounds) {
    const td = el("td", { text: percent(risk) });
    if (bounds) td.append(el("span", { class: "interval", text: " (" + percent(bounds[0]) + "–" + percent(bounds[1]) + ")" }));
    if (month > extrapolatedAfter(treatment)) {
      td.append(el("span", { "aria-hidden": "true", text: "*" }),
                el("span", { class: "visually-hidden", text: " (extrapolated)" }));
    }
    return td;
  }

  function renderSummary(prediction) {
    const table = $("summary");
    table.querySelectorAll("tbody").forEach((body) => body.remove());
    const heads = table.querySelectorAll("thead th");
    SUMMARY_MONTHS.forEach((month, k) => { heads[k].textContent = "By month " + month; });
    for (const [outcome, scores] of Object.entries(prediction.outcomes)) {
      const at = SUMMARY_MONTHS.map((month) => scores.contrast[month - 1]);
      const body = el("tbody", {}, el("tr", { class: "group" },
        el("th", { scope: "rowgroup", colspan: SUMMARY_MONTHS.length + 1, text: OUTCOME_NAMES[outcome] || outcome })));
      for (const t of TREATMENTS) {
        const chosen = t === prediction.treatment;
        const head = el("th", { scope: "row", text: "On " + valueName(t) });
        if (chosen) head.append(el("span", { class: "visually-hidden", text: " (under consideration)" }));
        body.append(el("tr", { class: chosen ? "chosen" : null }, head,
          ...at.map((contrast, k) => cell(contrast["risk_if_" + t], SUMMARY_MONTHS[k], t,
            chosen ? scores.risks[SUMMARY_MONTHS[k] - 1].risk_interval : null))));
      }
      body.append(el("tr", {}, el("th", { scope: "row", text: "Difference" }),
        ...at.map((contrast) => el("td", { text: points(contrast.excess) }))));
      table.append(body);
    }
    const notes = TREATMENTS.filter((t) => SUMMARY_MONTHS.some((m) => m > extrapolatedAfter(t)))
      .map((t) => "* Extrapolated: beyond the " + extrapolatedAfter(t) + " months of follow-up on " + valueName(t) +
                  " in the training data.");
    $("summary-note").textContent = notes.join(" ");
    $("interval-note").textContent = intervalNote(prediction);
  }

  // What the brackets are, in the served model's own words (GET /model), with how often they held the truth.
  function intervalNote(prediction) {
    const interval = model.interval;
    if (!interval) return "This model version was trained without refits: its risks come without an interval.";
    const held = [];
    for (const outcome of Object.keys(prediction.outcomes)) {
      for (const month of SUMMARY_MONTHS) {
        const share = interval.benchmark_coverage[outcome + "_" + month + "m"];
        if (share !== null && share !== undefined) {
          held.push((SHORT_NAMES[outcome] || outcome) + " by month " + month + " " + Math.round(100 * share) + "%");
        }
      }
    }
    return "In brackets, for the treatment under consideration: the " + interval.name + ", " + interval.method + "." +
      (held.length ? " On the benchmark cohort it held the true risk of this share of patients: " + held.join(", ") +
        "." : "");
  }

  function niceMax(value) {
    const candidates = [0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.8, 1];
    return candidates.find((c) => c >= value * 1.05) || 1;
  }

  function curve(scores, treatment) {
    const key = "risk_if_" + treatment;
    return [0].concat(scores.contrast.map((at) => at[key]));
  }

  function renderCurves(prediction) {
    const container = $("curves");
    container.replaceChildren();
    // Drawn at a grid column's width (within limits), so that the text keeps its size on a phone.
    const columns = getComputedStyle(container).gridTemplateColumns.split(" ").length;
    const gap = parseFloat(getComputedStyle(container).columnGap) || 0;
    const column = (container.clientWidth - gap * (columns - 1)) / columns;
    const width = Math.round(Math.max(300, Math.min(640, column || 640)));
    const height = 280, left = 52, right = width < 420 ? 114 : 150, top = 16, bottom = 44;
    const plotWidth = width - left - right, plotHeight = height - top - bottom;
    for (const [outcome, scores] of Object.entries(prediction.outcomes)) {
      const lines = Object.fromEntries(TREATMENTS.map((t) => [t, curve(scores, t)]));
      const highest = niceMax(Math.max(...TREATMENTS.map((t) => Math.max(...lines[t]))));
      const x = (month) => left + (plotWidth * month) / MONTHS;
      const y = (risk) => top + plotHeight * (1 - risk / highest);
      const id = "curve-" + outcome;
      const name = OUTCOME_NAMES[outcome] || outcome;
      const description = TREATMENTS.map((t) => valueName(t) + " " + percent(lines[t][MONTHS]) + " by month 60" +
        (MONTHS > extrapolatedAfter(t) ? " (extrapolated after month " + extrapolatedAfter(t) + ")" : "")).join("; ");
      const chart = svg("svg", { viewBox: "0 0 " + width + " " + height, role: "img",
                                 "aria-labelledby": id + "-title " + id + "-desc", class: "chart" });
      chart.append(svg("title", { id: id + "-title" }, name + ": risk of onset by month, 0–60"),
                   svg("desc", { id: id + "-desc" }, description));
      const ticks = [0, 0.25, 0.5, 0.75, 1].map((share) => share * highest);
      for (const risk of ticks) {
        chart.append(svg("line", { x1: left, x2: left + plotWidth, y1: y(risk), y2: y(risk), class: "grid" }),
                     svg("text", { x: left - 6, y: y(risk) + 4, class: "tick", "text-anchor": "end" }, percent(risk).replace("<0.1%", (100 * risk).toPrecision(1) + "%")));
      }
      for (let month = 0; month <= MONTHS; month += 12) {
        chart.append(svg("line", { x1: x(month), x2: x(month), y1: top + plotHeight, y2: top + plotHeight + 4, class: "axis" }),
                     svg("text", { x: x(month), y: top + plotHeight + 18, class: "tick", "text-anchor": "middle" }, String(month)));
      }
      chart.append(svg("line", { x1: left, x2: left + plotWidth, y1: top + plotHeight, y2: top + plotHeight, class: "axis" }),
                   svg("line", { x1: left, x2: left, y1: top, y2: top + plotHeight, class: "axis" }),
                   svg("text", { x: left + plotWidth / 2, y: height - 6, class: "axis-label", "text-anchor": "middle" },
                       "months after the first course"));
      const ends = [];
      for (const t of TREATMENTS) {
        const follow = Math.min(extrapolatedAfter(t), MONTHS);
        const path = (from, to) => lines[t].slice(from, to + 1)
          .map((risk, i) => (i ? "L" : "M") + x(from + i).toFixed(1) + " " + y(risk).toFixed(1)).join(" ");
        chart.append(svg("path", { d: path(0, follow), class: "line " + t }));
        if (follow < MONTHS) {
          chart.append(svg("path", { d: path(follow, MONTHS), class: "line extrapolated " + t }));
        }
        for (const month of SUMMARY_MONTHS) {
          chart.append(svg("circle", { cx: x(month), cy: y(lines[t][month]), r: 3.5, class: "dot " + t }));
        }
        ends.push({ t, y: y(lines[t][MONTHS]) });
      }
      // Direct labels at the lines' ends, wrapped to the margin and kept apart when the ends are close.
      const lineHeight = 15;
      for (const end of ends) {
        const words = valueName(end.t).split(" ");
        end.lines = [];
        for (const word of words) {
          const last = end.lines[end.lines.length - 1];
          if (last && (last + " " + word).length * 8 <= right - 12) end.lines[end.lines.length - 1] = last + " " + word;
          else end.lines.push(word);
        }
        end.lines.push(percent(lines[end.t][MONTHS]));
      }
      ends.sort((a, b) => a.y - b.y);
      for (let i = 1; i < ends.length; i++) {
        ends[i].y = Math.max(ends[i].y, ends[i - 1].y + lineHeight * ends[i - 1].lines.length + 4);
      }
      for (const end of ends) {
        const text = svg("text", { x: left + plotWidth + 8, y: end.y, class: "end-label " + end.t });
        end.lines.forEach((line, k) => text.append(svg("tspan", { x: left + plotWidth + 8, dy: k ? lineHeight : 0 }, line)));
        chart.append(text);
      }
      const peak = "Under " + valueName(prediction.treatment) + ", onsets are likeliest in year " + scores.peak_hazard_year + ".";
      const yearly = el("table", { class: "years" },
        el("caption", { text: name + ": risk by the end of each year" }),
        el("thead", {}, el("tr", {}, el("th", { scope: "col", text: "Month" }),
          ...TREATMENTS.map((t) => el("th", { scope: "col", text: "On " + valueName(t) })))),
        el("tbody", {}, ...[12, 24, 36, 48, 60].map((month) => el("tr", {},
          el("th", { scope: "row", text: String(month) }),
          ...TREATMENTS.map((t) => el("td", { text: percent(lines[t][month]) + (month > extrapolatedAfter(t) ? " (extrapolated)" : "") }))))));
      container.append(el("figure", { class: "curve" }, chart,
        el("figcaption", {}, el("strong", { text: name + ". " }), description + ". " + peak),
        el("details", {}, el("summary", { text: "The values as a table" }), yearly)));
    }
  }

  function displayValue(name) {
    const patient = shown.patient;
    if (shown.prediction.not_provided.includes(name)) return null;
    const f = feature(name);
    let value = patient[name];
    if (name === "treatment") value = shown.prediction.treatment;
    if (value === undefined) return null;
    if (f.kind === "boolean") return value ? "yes" : "no";
    if (f.kind === "category") return valueName(value);
    let text = String(value) + (f.unit ? " " + f.unit : "");
    if (name === "il21_pg_ml" && patient.il21_assay) text += ", " + valueName(patient.il21_assay);
    return text;
  }

  function explainMonth() {
    const month = Number($("explain-month").value);
    return Number.isInteger(month) && month >= 1 && month <= MONTHS ? month : null;
  }

  function renderWaterfalls() {
    const container = $("waterfalls");
    container.replaceChildren();
    const month = explainMonth();
    if (month === null) {
      container.append(el("p", { class: "field-error", text: "Choose a whole month from 1 to " + MONTHS + "." }));
      return;
    }
    for (const [outcome, scores] of Object.entries(shown.prediction.outcomes)) {
      container.append(waterfall(outcome, scores.risks[month - 1]));
    }
  }

  // The reference patient's risk: the answer's own (every family gives it); on the log cumulative hazard
  // scale it is 1 - exp(-exp(base_value)), which older answers leave to the client.
  function referenceRisk(at) {
    return at.reference_risk ?? -Math.expm1(-Math.exp(at.base_value));
  }

  // Each input's share of the change in risk from the reference patient's, in risk units: its exact
  // log-scale value times the change in risk per unit of the log scale between the two. The shares
  // add up to the change, keep the signs of the log-scale values and do not depend on any order.
  function riskShares(at) {
    const total = Object.values(at.shap).reduce((sum, value) => sum + value, 0);
    const reference = referenceRisk(at);
    const slope = Math.abs(total) > 1e-9 ? (at.risk - reference) / total : 0;
    return Object.entries(at.shap).map(([name, value]) => ({ name, value, share: value * slope }))
      .sort((a, b) => Math.abs(b.value) - Math.abs(a.value));
  }

  // The inputs left empty as one step, unless each is asked for (the parts add up the same either way).
  function folded(shares) {
    const unknown = shares.filter((s) => shown.prediction.not_provided.includes(s.name));
    if ($("show-unknown").checked || unknown.length < 2) return shares;
    const known = shares.filter((s) => !unknown.includes(s));
    const sum = (key) => unknown.reduce((total, s) => total + s[key], 0);
    return known.concat([{ name: "not-provided", value: sum("value"), share: sum("share"), folded: unknown }]);
  }

  function waterfall(outcome, at) {
    const reference = referenceRisk(at);
    let level = reference;
    const steps = folded(riskShares(at)).map((step) => {
      const before = level;
      level += step.share;
      return Object.assign(step, { before, after: level });
    });
    const final = at.risk;
    const levels = [reference, final, ...steps.map((s) => s.after)];
    const low = Math.min(...levels), high = Math.max(...levels);
    const span = high - low || 1;
    const position = (risk) => (100 * (risk - low)) / span;
    const name = OUTCOME_NAMES[outcome] || outcome;
    const treatment = valueName(shown.prediction.treatment);
    const table = el("table", { class: "waterfall" });
    table.append(el("caption", { text: name + " by month " + at.horizon_months + " on " + treatment + ": from " +
      percent(reference) + " for the reference patient to " + percent(final) + " for this patient" +
      (at.extrapolated ? " (extrapolated)" : "") + "." }));
    table.append(el("thead", {}, el("tr", {},
      el("th", { scope: "col", text: "Input" }), el("th", { scope: "col", class: "value", text: "This patient" }),
      el("th", { scope: "col", text: "Change in risk" }),
      el("th", { scope: "col", class: "log", text: at.scale.charAt(0).toUpperCase() + at.scale.slice(1) }))));
    const body = el("tbody");
    const bar = (from, to, kind) => {
      const track = el("span", { class: "track", "aria-hidden": "true" });
      const fill = el("span", { class: "bar " + kind });
      fill.style.left = Math.min(position(from), position(to)).toFixed(2) + "%";
      fill.style.width = Math.max(Math.abs(position(to) - position(from)), 0.4).toFixed(2) + "%";
      track.append(fill);
      return track;
    };
    body.append(el("tr", { class: "total" },
      el("th", { scope: "row", text: "Reference patient" }), el("td", { class: "value", text: "average in training" }),
      el("td", {}, bar(low, reference, "level"), el("span", { class: "amount", text: percent(reference) })),
      el("td", { class: "log", text: at.base_value.toFixed(3) })));
    for (const step of steps) {
      const value = step.folded ? null : displayValue(step.name);
      const tag = () => el("span", { class: "tag", text: "not provided" });
      const name = step.folded ? "Not provided (" + step.folded.length + " inputs)" : label(step.name);
      const shownValue = step.folded ? step.folded.map((s) => label(s.name)).join(", ") : value === null ? tag() : value;
      const kind = step.share >= 0 ? "up" : "down";
      // On a phone the value goes under the input's name, and its own column is hidden.
      const inline = el("span", { class: "inline-value" }, value === null ? tag() : value);
      body.append(el("tr", { "data-feature": step.name, class: step.folded ? "folded" : null },
        el("th", { scope: "row" }, name, inline),
        el("td", { class: "value" }, shownValue),
        el("td", {}, bar(step.before, step.after, kind), el("span", { class: "amount " + kind, text: points(step.share) })),
        el("td", { class: "log", text: signed(step.value, 3) })));
    }
    body.append(el("tr", { class: "total" },
      el("th", { scope: "row", text: "This patient" }), el("td", { class: "value", text: "" }),
      el("td", {}, bar(low, final, "level"), el("span", { class: "amount", text: percent(final) })),
      el("td", { class: "log", text: Math.log(-Math.log1p(-final)).toFixed(3) })));
    table.append(body);
    return el("div", { class: "scroll", role: "region", tabindex: "0", "aria-label": name + ": explanation" }, table);
  }

  // "25, 26, 27, 28 months" -> "25–28 months": the page asks for every month, and says so briefly.
  function monthRuns(text) {
    return text.replace(/\d+(, \d+)+(?= months)/g, function (list) {
      const months = list.split(", ").map(Number);
      const runs = [];
      for (const month of months) {
        const run = runs[runs.length - 1];
        if (run && month === run[1] + 1) run[1] = month;
        else runs.push([month, month]);
      }
      return runs.map(([a, b]) => (a === b ? String(a) : a + "–" + b)).join(", ");
    });
  }

  // A warning as the page's labels say it: each input's name and each category value in words.
  function inWords(warning) {
    let text = warning.replace(/^(\w+):/, (whole, name) => (feature(name) ? feature(name).label + ":" : whole));
    for (const f of model.features) {
      for (const [value, words] of Object.entries(f.category_labels || {})) text = text.split(value).join(words);
    }
    text = text.replace(/^extrapolated:/, "Extrapolated:");
    return text.replace(/ and is scored as ([-\d.]+)/, (whole, value) => {
      const f = feature((/^(\w+):/.exec(warning) || [])[1]);
      return " and is scored as " + value + (f && f.unit ? " " + f.unit : "");
    });
  }

  function renderWarnings(prediction) {
    const list = $("warnings");
    list.replaceChildren();
    if (!prediction.warnings.length) list.append(el("li", { text: "None." }));
    for (const warning of prediction.warnings) list.append(el("li", { text: monthRuns(inWords(warning)) }));
    if (prediction.not_provided.length) {
      list.append(el("li", { text: "Not provided (scored as unknown): " + prediction.not_provided.map(label).join(", ") + "." }));
    }
  }

  let resizing = null;
  window.addEventListener("resize", function () {
    clearTimeout(resizing);
    resizing = setTimeout(() => { if (shown) renderCurves(shown.prediction); }, 150);
  });

  $("explain-month").addEventListener("input", function () {
    if (shown) renderWaterfalls();
  });

  $("show-unknown").addEventListener("change", function () {
    if (shown) renderWaterfalls();
  });

  $("print").addEventListener("click", () => window.print());

  $("download-json").addEventListener("click", function () {
    window.autoriskExport.save("autorisk-risks.json", JSON.stringify(shown.answer, null, 2), "application/json");
  });

  $("download-fhir").addEventListener("click", async function () {
    const codes = await fetch("fhir/CodeSystem/autorisk", { headers: auth() });
    if (!codes.ok) {
      say("The server answered " + codes.status + " to GET fhir/CodeSystem/autorisk.");
      return;
    }
    const system = (await codes.json()).url;
    const body = window.autoriskExport.fhirParameters(model.features, system, shown.patient, [12, 24, 36, 48, 60]);
    const response = await fetch("fhir/RiskAssessment/$assess", {
      method: "POST", body: JSON.stringify(body),
      headers: Object.assign({ "Content-Type": "application/fhir+json" }, auth()),
    });
    const text = await response.text();
    if (!response.ok) {
      say("The server answered " + response.status + " to the FHIR request: " + text);
      return;
    }
    window.autoriskExport.save("autorisk-risks.fhir.json", text, "application/fhir+json");
    say("Saved the risks as a FHIR Bundle.");
  });

  $("show-log").addEventListener("change", function () {
    $("waterfalls").classList.toggle("show-log", this.checked);
  });

  start();
})();
