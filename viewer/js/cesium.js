// The one place CesiumJS is imported, served by the CIM server from node_modules/cesium/Build/Cesium.
// CESIUM_BASE_URL is set in index.html before this module loads, so workers and assets come from /cesium/ too.
export * from "/cesium/index.js";
