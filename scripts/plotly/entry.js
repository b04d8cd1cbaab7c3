// The Plotly.js the portal serves: the core and only the trace types its charts draw
// (explainability/charts.py, static/js/charts.js). Adding a trace type to a chart means
// adding it here and in TRACES of build.mjs, then `make plotly`.
'use strict';

var Plotly = require('plotly.js/lib/core');

Plotly.register([
    require('plotly.js/lib/bar'),
    require('plotly.js/lib/scattergl'),
    require('plotly.js/lib/waterfall'),
]);

module.exports = Plotly;
