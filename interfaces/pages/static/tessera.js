// Passkeys (WebAuthn), and saving a click after a provider's sign-in; the one script of the pages: no inline script anywhere (the CSP forbids
// it). The sections stay hidden unless the server offers passkeys and the browser can do them.
"use strict";

(function () {
  const supported = window.PublicKeyCredential
    && typeof PublicKeyCredential.parseCreationOptionsFromJSON === "function"
    && typeof PublicKeyCredential.parseRequestOptionsFromJSON === "function";

  async function send(section, path, body) {
    const response = await fetch(path, {
      method: "POST",
      credentials: "same-origin",
      headers: { "Content-Type": "application/json", "X-CSRF-Token": section.dataset.csrf },
      body: JSON.stringify(body),
    });
    const answer = await response.json().catch(() => ({}));
    if (!response.ok) {
      throw new Error((answer.errors || ["That did not work."]).join(" "));
    }
    return answer;
  }

  function status(section, text) {
    const line = section.querySelector("[data-passkey-status]");
    if (line) line.textContent = text;
  }

  function ceremony(section, button, run) {
    section.hidden = false;
    button.addEventListener("click", async () => {
      button.disabled = true;
      status(section, "Follow your browser's prompt…");
      try {
        const answer = await run();
        window.location.assign(answer.next || "/account");
      } catch (error) {
        status(section, error.message || "The passkey was not used.");
        button.disabled = false;
      }
    });
  }

  document.addEventListener("DOMContentLoaded", () => {
    // After a provider's sign-in: finish without a click. Each works without script too (the
    // person presses the button or follows the link); script only saves the click.
    const finish = document.querySelector("form[data-auto-submit]");
    if (finish) finish.requestSubmit();
    const follow = document.querySelector("a[data-auto-follow]");
    if (follow) window.location.assign(follow.href);
    if (!supported) return;
    const add = document.querySelector("[data-passkey-add]");
    const addButton = document.getElementById("passkey-add");
    if (add && addButton) {
      ceremony(add, addButton, async () => {
        // Re-authenticated: the password (and code) typed beside the button.
        const proof = {};
        add.querySelectorAll("[data-reauth]").forEach((input) => { proof[input.dataset.reauth] = input.value; });
        const json = await send(add, "/account/passkeys/options", proof);
        const publicKey = PublicKeyCredential.parseCreationOptionsFromJSON(json.options || json);
        const credential = await navigator.credentials.create({ publicKey });
        const name = document.getElementById("passkey-name").value.trim();
        return send(add, "/account/passkeys", { credential: credential.toJSON(), name: name || null });
      });
    }
    const signIn = document.querySelector("[data-passkey-sign-in]");
    const signInButton = document.getElementById("passkey-sign-in");
    if (signIn && signInButton) {
      ceremony(signIn, signInButton, async () => {
        const json = await send(signIn, "/login/passkey/options", {});
        const publicKey = PublicKeyCredential.parseRequestOptionsFromJSON(json.options || json);
        const credential = await navigator.credentials.get({ publicKey });
        // Where the sign-in form was going: the server keeps it only if it is on this site.
        const next = document.querySelector("form input[name=next]");
        return send(signIn, "/login/passkey", {
          credential: credential.toJSON(),
          next: next ? next.value : null,
        });
      });
    }
  });
})();
