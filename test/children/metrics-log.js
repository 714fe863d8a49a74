'use strict';
const Handler = require('../../dist/lib/index.js').default;
new Handler({}).get('some-key', {}).then(() => setTimeout(() => {}, 300));
