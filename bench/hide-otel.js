// Preload (`node -r ./bench/hide-otel.js`) that makes `@opentelemetry/api` unresolvable, as in an app that
// does not install it: the benchmark's "absent" row and the tests of the no-op path, without uninstalling.
// Reaches child processes through NODE_OPTIONS=-r too.
'use strict';
const Module = require('node:module');

const resolve = Module._resolveFilename;
Module._resolveFilename = function (request, ...rest) {
  if (request === '@opentelemetry/api' || request.startsWith('@opentelemetry/api/')) {
    throw Object.assign(new Error(`Cannot find module '${request}' (hidden by bench/hide-otel.js)`), { code: 'MODULE_NOT_FOUND' });
  }
  return resolve.call(this, request, ...rest);
};
