// A server-side SMART app on client-js (npm fhirclient, pinned in package.json), for
// tests/test_interop_clientjs_node.py. Unmodified library calls only:
//   GET /launch?iss=..[&launch=..]  -> smart(req, res, storage).authorize(...)  (302 to authorize)
//   GET /callback?code=..&state=..  -> smart(req, res, storage).ready(), then read, search,
//                                      write, refresh and read again; answers JSON.
// Listens on 127.0.0.1:$PORT; CLIENT_ID and SCOPE come from the environment.
"use strict";
const http = require("http");
const smart = require("fhirclient");

const values = {};
const storage = {
  async get(key) { return values[key]; },
  async set(key, value) { values[key] = value; return value; },
  async unset(key) { const had = key in values; delete values[key]; return had; },
};

async function work(client) {
  const out = { patientId: client.patient.id, fhirUser: client.getFhirUser() };
  const patient = await client.patient.read();
  out.patientName = patient.name[0].family;
  const bundle = await client.request("Observation?patient=" + client.patient.id);
  out.searchType = bundle.resourceType;
  const created = await client.create({
    resourceType: "Observation", status: "final", code: { text: "client-js node check" },
    subject: { reference: "Patient/" + client.patient.id }, valueInteger: 5 });
  out.createdId = created.id;
  const before = client.state.tokenResponse.access_token;
  await client.refresh();
  out.refreshed = client.state.tokenResponse.access_token !== before;
  out.readAfterRefresh = (await client.request("Observation/" + created.id)).id;
  return out;
}

const server = http.createServer((req, res) => {
  const url = new URL(req.url, "http://127.0.0.1");
  const answer = (status, body) => {
    res.writeHead(status, { "Content-Type": "application/json" });
    res.end(JSON.stringify(body));
  };
  if (url.pathname === "/launch") {
    smart(req, res, storage).authorize({
      clientId: process.env.CLIENT_ID, scope: process.env.SCOPE, redirectUri: "/callback",
      pkceMode: "required",
    }).catch((error) => answer(500, { error: String(error && error.message || error) }));
  } else if (url.pathname === "/callback") {
    smart(req, res, storage).ready().then(work)
      .then((out) => answer(200, out))
      .catch((error) => answer(500, { error: String(error && error.message || error) }));
  } else {
    answer(404, { error: "not found" });
  }
});
server.listen(Number(process.env.PORT), "127.0.0.1", () => console.log("ready"));
