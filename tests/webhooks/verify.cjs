// The reference Standard Webhooks verifier (npm `standardwebhooks`) over a batch of deliveries.
// stdin: {"secrets": ["whsec_…", …], "deliveries": [{"headers": {…}, "body": "<base64>"}, …]}
// stdout: one object per delivery, secret → "ok" or the verifier's error message.
"use strict";
const { Webhook } = require("standardwebhooks");

let input = "";
process.stdin.setEncoding("utf8");
process.stdin.on("data", (chunk) => {
  input += chunk;
});
process.stdin.on("end", () => {
  const { secrets, deliveries } = JSON.parse(input);
  const verdicts = deliveries.map(({ headers, body }) => {
    const raw = Buffer.from(body, "base64");
    const verdict = {};
    for (const secret of secrets) {
      try {
        new Webhook(secret).verify(raw, headers);
        verdict[secret] = "ok";
      } catch (error) {
        verdict[secret] = String(error.message || error);
      }
    }
    return verdict;
  });
  process.stdout.write(JSON.stringify(verdicts));
});
