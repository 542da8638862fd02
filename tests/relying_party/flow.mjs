// A web app's back end written with panva's openid-client (a certified relying party), signing a
// person in through tessera: discovery, the code flow with PKCE, state and nonce, the ID token
// validated, userinfo, refresh (rotation), introspection, revocation, client_credentials, and
// the RP-initiated logout URL. Reads its settings as JSON on argv[2]. The browser step is the
// caller's: this prints {"authorizationUrl"} as one line, reads the URL the browser came back to
// as one line, then prints what it got as one JSON object.
import * as client from 'openid-client';
import { createInterface } from 'node:readline';

const settings = JSON.parse(process.argv[2]);
const loopback = { execute: [client.allowInsecureRequests] }; // http, on 127.0.0.1 only
const lines = createInterface({ input: process.stdin })[Symbol.asyncIterator]();
const refusal = (error) => ({ name: error.name, error: error.error, status: error.status });

const config = await client.discovery(
  new URL(settings.issuer), settings.clientId, undefined,
  client.ClientSecretBasic(settings.clientSecret), loopback,
);

const codeVerifier = client.randomPKCECodeVerifier();
const state = client.randomState();
const nonce = client.randomNonce();
const authorizationUrl = client.buildAuthorizationUrl(config, {
  redirect_uri: settings.redirectUri,
  scope: 'openid profile email offline_access',
  code_challenge: await client.calculatePKCECodeChallenge(codeVerifier),
  code_challenge_method: 'S256',
  state,
  nonce,
  prompt: 'consent', // OpenID Connect Core 11: offline_access is asked for with consent
});
console.log(JSON.stringify({ authorizationUrl: authorizationUrl.href }));
const { value: callback } = await lines.next();

// Checks state, the code's exchange with the verifier, and the ID token (signature by the JWKS,
// iss, aud, azp, exp, iat, nonce) before it returns.
const tokens = await client.authorizationCodeGrant(config, new URL(callback), {
  pkceCodeVerifier: codeVerifier,
  expectedState: state,
  expectedNonce: nonce,
  idTokenExpected: true,
});
const claims = tokens.claims();
const userinfo = await client.fetchUserInfo(config, tokens.access_token, claims.sub);

const refreshed = await client.refreshTokenGrant(config, tokens.refresh_token);
const active = await client.tokenIntrospection(config, refreshed.access_token);
await client.tokenRevocation(config, refreshed.refresh_token);
const revoked = await client.tokenIntrospection(config, refreshed.refresh_token);
let afterRevocation = null;
try {
  await client.refreshTokenGrant(config, refreshed.refresh_token);
} catch (error) {
  afterRevocation = refusal(error);
}

const machine = settings.machineScope
  ? await client.clientCredentialsGrant(config, { scope: settings.machineScope })
  : null;

// A code is single use: a second exchange is refused, and ends what the first one issued.
let codeAgain = null;
try {
  await client.authorizationCodeGrant(config, new URL(callback), {
    pkceCodeVerifier: codeVerifier, expectedState: state, expectedNonce: nonce,
  });
} catch (error) {
  codeAgain = refusal(error);
}

const afterCodeAgain = await client.tokenIntrospection(config, tokens.access_token);

const endSessionUrl = client.buildEndSessionUrl(config, {
  id_token_hint: tokens.id_token,
  post_logout_redirect_uri: settings.postLogoutRedirectUri,
  state: 'after-logout',
});

console.log(JSON.stringify({
  metadata: config.serverMetadata(),
  tokens: { ...tokens },
  claims,
  userinfo,
  refreshed: { ...refreshed },
  active,
  revoked,
  afterRevocation,
  machine: machine && { ...machine },
  codeAgain,
  afterCodeAgain,
  endSessionUrl: endSessionUrl.href,
}));
