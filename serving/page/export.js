// The page's exports: the answer as a JSON file, the same patient as FHIR (a Parameters resource for
// POST fhir/RiskAssessment/$assess, coded with the server's own CodeSystem), and files saved from the browser.
// Loaded before app.js, which calls these; nothing here reaches the server by itself.
"use strict";

window.autoriskExport = (function () {
  // The patient of POST /predict as $assess parameters: the Patient's sex, one Observation per input (coded by
  // the input's name in the server's CodeSystem, its kit as the IL-21 method), the treatment and the months.
  function fhirParameters(features, system, patient, months) {
    const parameters = [{ name: "patient", resource: { resourceType: "Patient", gender: patient.sex } }];
    for (const f of features) {
      const value = patient[f.name];
      if (value === undefined || !f.model_input || f.name === "sex" || f.name === "treatment") continue;
      const observation = { resourceType: "Observation", status: "final",
                            code: { coding: [{ system, code: f.name, display: f.label }] } };
      if (f.kind === "boolean") observation.valueBoolean = value;
      else observation.valueQuantity = f.unit ? { value, unit: f.unit } : { value };
      if (f.name === "il21_pg_ml" && patient.il21_assay) {
        observation.method = { coding: [{ system, code: patient.il21_assay }] };
      }
      parameters.push({ name: "observation", resource: observation });
    }
    if (patient.treatment) parameters.push({ name: "treatment", valueCode: patient.treatment });
    for (const month of months) parameters.push({ name: "horizon", valueInteger: month });
    return { resourceType: "Parameters", parameter: parameters };
  }

  // Saves text as a file: a link to a blob of this page, clicked once.
  function save(name, text, type) {
    const url = URL.createObjectURL(new Blob([text], { type }));
    const link = document.createElement("a");
    link.href = url;
    link.download = name;
    document.body.append(link);
    link.click();
    link.remove();
    setTimeout(() => URL.revokeObjectURL(url), 1000);
  }

  return { fhirParameters, save };
})();
