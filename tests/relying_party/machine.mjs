// A machine client of tessera, written with panva's openid-client (a certified relying party):
// discovery, client_credentials, introspection and revocation. Reads its settings as JSON on
// argv[2]; prints what it got as one JSON object.
import * as client from 'openid-client';

const { issuer, clientId, clientSecret, resource, scope } = JSON.parse(process.argv[2]);
const loopback = { execute: [client.allowInsecureRequests] }; // http, on 127.0.0.1 only

const basic = await client.discovery(
  new URL(issuer), clientId, undefined, client.ClientSecretBasic(clientSecret), loopback,
);
const post = await client.discovery(
  new URL(issuer), clientId, undefined, client.ClientSecretPost(clientSecret), loopback,
);

const tokens = await client.clientCredentialsGrant(basic, { scope, resource });
const posted = await client.clientCredentialsGrant(post, { scope });
const active = await client.tokenIntrospection(basic, tokens.access_token);
await client.tokenRevocation(post, tokens.access_token);
const revoked = await client.tokenIntrospection(post, tokens.access_token);

let wrongSecret = null;
try {
  const wrong = await client.discovery(
    new URL(issuer), clientId, undefined, client.ClientSecretBasic(clientSecret + 'x'), loopback,
  );
  await client.clientCredentialsGrant(wrong, { scope });
} catch (error) {
  wrongSecret = {
    name: error.name, code: error.code, error: error.error, status: error.status,
    challenge: error.cause,
  };
}

console.log(JSON.stringify({
  metadata: basic.serverMetadata(),
  tokens: { ...tokens },
  posted: { ...posted },
  active,
  revoked,
  wrongSecret,
}));
