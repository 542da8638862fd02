// Starts Swagger UI on the OpenAPI document this service serves. A file, not an inline script,
// so the page's policy can forbid inline scripts; no validator badge, which would call out.
window.addEventListener("DOMContentLoaded", function () {
  var root = document.getElementById("swagger-ui");
  window.ui = SwaggerUIBundle({
    url: root.dataset.specUrl,
    dom_id: "#swagger-ui",
    deepLinking: true,
    validatorUrl: null,
    presets: [SwaggerUIBundle.presets.apis],
  });
});
