// Swagger UI for this server's OpenAPI document (BentoML's files, without its index page's tracker).
// With AUTORISK_API_TOKEN set, the document and every "Try it out" call need the token: the one the
// page at / was given in this tab, or one typed here.
"use strict";

(function () {
  const TOKEN_KEY = "autorisk.token";
  const form = document.getElementById("token-form");
  const input = document.getElementById("token");
  const error = document.getElementById("token-error");

  function headers() {
    const token = sessionStorage.getItem(TOKEN_KEY);
    return token ? { Authorization: "Bearer " + token } : {};
  }

  // BentoML's document describes a generic service, with badges that load from outside; this one is
  // described in its own words, with the model version the server names in every answer.
  function describe(spec, version) {
    spec.info = {
      title: "autorisk",
      version: version || "unpinned",
      description: "Risk of a thyroid disorder and of immune thrombocytopenic purpura (ITP) month by month " +
        "after alemtuzumab for multiple sclerosis, and under interferon beta-1a, with exact SHAP explanations.\n\n" +
        "**Research tool on synthetic data; not for clinical decisions.**\n\n" +
        "`POST /predict` scores patients; `GET /model` describes the model version served and its inputs. " +
        "The page for one patient is at [/](./).",
    };
    return spec;
  }

  function start(spec) {
    form.hidden = true;
    window.ui = window.SwaggerUIBundle({
      spec: spec,
      dom_id: "#swagger-ui",
      deepLinking: true,
      // Swagger UI's default sends the document to an outside validator service.
      validatorUrl: null,
      presets: [window.SwaggerUIBundle.presets.apis],
      layout: "BaseLayout",
      requestInterceptor: function (request) {
        Object.assign(request.headers, headers());
        return request;
      },
    });
  }

  async function open() {
    const response = await fetch("docs.json", { headers: headers() });
    if (response.ok) {
      start(describe(await response.json(), response.headers.get("X-Model-Version")));
      return;
    }
    if (response.status !== 401) {
      error.textContent = "The server answered " + response.status + " to GET /docs.json.";
      form.hidden = false;
      return;
    }
    if (sessionStorage.getItem(TOKEN_KEY)) {
      error.textContent = "The server did not accept this token.";
      input.setAttribute("aria-invalid", "true");
    }
    form.hidden = false;
    input.focus();
  }

  form.addEventListener("submit", function (event) {
    event.preventDefault();
    const token = input.value.trim();
    if (!token) {
      error.textContent = "Enter the API token.";
      input.setAttribute("aria-invalid", "true");
      input.focus();
      return;
    }
    sessionStorage.setItem(TOKEN_KEY, token);
    error.textContent = "";
    input.removeAttribute("aria-invalid");
    open();
  });

  open();
})();
