export { apiRoutes, buildApi, startApi, type ApiServer } from './server.js';
export { SESSION_COOKIE, type ApiDeps } from './deps.js';
export { ApiError } from './errors.js';
export { openApiDocument, type Route } from './routes.js';
