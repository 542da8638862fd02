// A real OpenID Provider for the tests: panva's oidc-provider (installed by tests/oidc/harness.py
// into tests/oidc/node_modules), configured from a JSON file the harness writes, with a minimal
// interaction handler that a test drives with plain form posts instead of a browser.
//
//   node tests/oidc/provider.mjs CONFIG.json PORT
//
// PORT 0 picks a free port. The issuer is http://127.0.0.1:PORT; once it answers, one line
// "listening http://127.0.0.1:PORT" goes to stdout. CONFIG.json:
//   clients   oidc-provider client metadata (client_id, client_secret, redirect_uris, ...)
//   accounts  {account id (the `sub`): its claims, e.g. {email, email_verified, name}}
//   jwks      {keys: [private JWKs]}: the first key of each alg signs, all are published
//   cookie_keys  keys that sign the provider's cookies
//   settings  merged over the configuration below (ttl, acrValues, ...), for one test's needs
import { readFileSync } from 'node:fs';
import * as http from 'node:http';

import Provider from 'oidc-provider';

const [configPath, portArgument] = process.argv.slice(2);
const config = JSON.parse(readFileSync(configPath, 'utf8'));
const accounts = config.accounts ?? {};

const server = http.createServer();
await new Promise((resolve, reject) => {
  server.once('error', reject);
  server.listen(Number(portArgument ?? 0), '127.0.0.1', resolve);
});
const issuer = `http://127.0.0.1:${server.address().port}`;

const provider = new Provider(issuer, {
  clients: config.clients ?? [],
  jwks: config.jwks,
  cookies: { keys: config.cookie_keys ?? ['tessera-tests-only'] },
  // The `sub` is the account id; the scope decides which of its claims a client gets.
  async findAccount(_ctx, accountId) {
    if (!Object.hasOwn(accounts, accountId)) return undefined;
    return {
      accountId,
      async claims() {
        return { ...accounts[accountId], sub: accountId };
      },
    };
  },
  claims: {
    acr: null, // null: a claim of its own, not one a scope stands for
    amr: null,
    auth_time: null,
    sid: null,
    iss: null,
    openid: ['sub'],
    email: ['email', 'email_verified'],
    profile: ['name', 'given_name', 'family_name', 'preferred_username', 'picture', 'locale'],
  },
  // Without any, oidc-provider drops `acr` from the ID token; settings.acrValues replaces them.
  acrValues: ['urn:tessera:test:pwd', 'urn:tessera:test:mfa'],
  // Like Google's, the ID token carries the scope's claims even when an access token is issued.
  conformIdTokenClaims: false,
  pkce: { methods: ['S256'], required: () => true },
  features: {
    devInteractions: { enabled: false }, // replaced by the handler below
    claimsParameter: { enabled: true },
    revocation: { enabled: true },
  },
  interactions: { url: (_ctx, interaction) => `/interaction/${interaction.uid}` },
  // Errors as JSON on the page, so a failing test shows the provider's reason.
  async renderError(ctx, out) {
    ctx.type = 'application/json';
    ctx.body = JSON.stringify(out);
  },
  ...(config.settings ?? {}),
});

const escape = (text) => String(text).replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);

function page(res, status, uid, action, fields) {
  res.statusCode = status;
  res.setHeader('content-type', 'text/html; charset=utf-8');
  res.setHeader('cache-control', 'no-store');
  res.end(
    `<!doctype html><title>${action}</title>`
      + `<form method="post" action="/interaction/${escape(uid)}/${action}">${fields}`
      + '<button>continue</button></form>'
      + `<form method="post" action="/interaction/${escape(uid)}/abort"><button>cancel</button></form>`,
  );
}

async function formBody(req) {
  const chunks = [];
  for await (const chunk of req) chunks.push(chunk);
  return new URLSearchParams(Buffer.concat(chunks).toString('utf8'));
}

// GET  /interaction/:uid          the login form (field `login`, optional `acr`, `amr`)
//                                 or the consent form, whichever prompt is pending
// POST /interaction/:uid/login    signs in as the account `login`
// POST /interaction/:uid/confirm  grants what the client asked for
// POST /interaction/:uid/abort    the user cancels: the client gets access_denied
async function interaction(req, res, uid, step) {
  const details = await provider.interactionDetails(req, res);
  if (details.uid !== uid) throw new Error('interaction mismatch');
  const { prompt, params, session } = details;

  if (req.method === 'GET' && step === undefined) {
    if (prompt.name === 'login') {
      page(res, 200, uid, 'login', '<input name="login"><input name="acr"><input name="amr">');
    } else {
      page(res, 200, uid, 'confirm', `<p>${escape(params.client_id)} asks for ${escape(params.scope)}</p>`);
    }
    return;
  }
  if (req.method !== 'POST') {
    res.statusCode = 405;
    res.end();
    return;
  }
  const form = await formBody(req);
  let result;
  if (step === 'abort') {
    result = { error: 'access_denied', error_description: 'the user cancelled' };
  } else if (step === 'login' && prompt.name === 'login') {
    const accountId = form.get('login') ?? '';
    if (!Object.hasOwn(accounts, accountId)) {
      page(res, 400, uid, 'login', `<p>unknown account ${escape(accountId)}</p><input name="login">`);
      return;
    }
    const login = { accountId };
    if (form.get('acr')) login.acr = form.get('acr');
    if (form.get('amr')) login.amr = form.get('amr').split(/[ ,]+/).filter(Boolean);
    result = { login };
  } else if (step === 'confirm' && prompt.name === 'consent') {
    const grant = details.grantId
      ? await provider.Grant.find(details.grantId)
      : new provider.Grant({ accountId: session.accountId, clientId: params.client_id });
    const missing = prompt.details;
    if (missing.missingOIDCScope) grant.addOIDCScope(missing.missingOIDCScope.join(' '));
    if (missing.missingOIDCClaims) grant.addOIDCClaims(missing.missingOIDCClaims);
    for (const [indicator, scopes] of Object.entries(missing.missingResourceScopes ?? {})) {
      grant.addResourceScope(indicator, scopes.join(' '));
    }
    result = { consent: { grantId: await grant.save() } };
  } else {
    res.statusCode = 400;
    res.end(`the pending prompt is ${prompt.name}, not ${step}`);
    return;
  }
  await provider.interactionFinished(req, res, result, { mergeWithLastSubmission: false });
}

const handleProvider = provider.callback();
server.on('request', (req, res) => {
  const match = new URL(req.url, issuer).pathname.match(/^\/interaction\/([^/]+)(?:\/(login|confirm|abort))?$/);
  if (!match) {
    handleProvider(req, res);
    return;
  }
  interaction(req, res, match[1], match[2]).catch((error) => {
    console.error(error);
    if (!res.headersSent) {
      res.statusCode = 400;
      res.setHeader('content-type', 'text/plain');
    }
    res.end(String(error?.message ?? error));
  });
});

// The harness stops the provider with SIGTERM: close at once, sessions live in memory only.
process.on('SIGTERM', () => process.exit(0));
process.on('SIGINT', () => process.exit(0));
console.log(`listening ${issuer}`);
