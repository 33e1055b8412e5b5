// Google's error answers, as the Drive API and the OAuth endpoints send them. The Drive bodies
// follow the "Resolve errors" page of the Drive API (`{"error": {"code", "message", "errors":
// [{"domain", "reason", "message", "location", "locationType"}]}}`); the token endpoint answers
// RFC 6749's `{"error", "error_description"}` with the descriptions Google uses.

/** One entry of `error.errors[]` in a Drive API error body. */
export interface GoogleErrorItem {
  domain: string;
  reason: string;
  message: string;
  location?: string;
  locationType?: string;
  extendedHelp?: string;
}

/** A Drive API error: the HTTP status and the JSON body Google sends with it. */
export class DriveApiError extends Error {
  constructor(
    readonly status: number,
    readonly item: GoogleErrorItem,
    readonly headers: Record<string, string> = {},
    /** The `error.status` string newer Google front ends add (e.g. "UNAVAILABLE"). */
    readonly grpcStatus?: string,
  ) {
    super(item.message);
  }

  body(): unknown {
    const error: Record<string, unknown> = {
      code: this.status,
      message: this.item.message,
      errors: [this.item],
    };
    if (this.grpcStatus) error.status = this.grpcStatus;
    return { error };
  }
}

const param = (location: string) => ({ location, locationType: 'parameter' });

/** The errors the emulator answers, each as Drive words it. */
export const driveErrors = {
  loginRequired: () =>
    new DriveApiError(
      401,
      {
        domain: 'global',
        reason: 'required',
        message: 'Login Required',
        locationType: 'header',
        location: 'Authorization',
      },
      { 'www-authenticate': 'Bearer realm="https://accounts.google.com/"' },
    ),
  authError: () =>
    new DriveApiError(
      401,
      {
        domain: 'global',
        reason: 'authError',
        message: 'Invalid Credentials',
        locationType: 'header',
        location: 'Authorization',
      },
      { 'www-authenticate': 'Bearer realm="https://accounts.google.com/", error="invalid_token"' },
    ),
  insufficientPermissions: () =>
    new DriveApiError(
      403,
      {
        domain: 'global',
        reason: 'insufficientPermissions',
        message: 'Request had insufficient authentication scopes.',
      },
      {},
      'PERMISSION_DENIED',
    ),
  fileNotFound: (fileId: string) =>
    new DriveApiError(404, {
      domain: 'global',
      reason: 'notFound',
      message: `File not found: ${fileId}.`,
      ...param('fileId'),
    }),
  driveNotFound: (driveId: string) =>
    new DriveApiError(404, {
      domain: 'global',
      reason: 'notFound',
      message: `Shared drive not found: ${driveId}`,
      ...param('driveId'),
    }),
  invalidValue: (location: string, message = 'Invalid Value') =>
    new DriveApiError(400, { domain: 'global', reason: 'invalid', message, ...param(location) }),
  required: (location: string) =>
    new DriveApiError(400, {
      domain: 'global',
      reason: 'required',
      message: `Required parameter: ${location}`,
      ...param(location),
    }),
  fieldsRequired: () =>
    new DriveApiError(400, {
      domain: 'global',
      reason: 'required',
      message: "The 'fields' parameter is required for this method.",
      ...param('fields'),
    }),
  invalidFieldSelection: (name: string) =>
    new DriveApiError(400, {
      domain: 'global',
      reason: 'invalidParameter',
      message: `Invalid field selection ${name}`,
      ...param('fields'),
    }),
  unknownParameter: (name: string) =>
    new DriveApiError(
      400,
      {
        domain: 'global',
        reason: 'invalid',
        message: `Invalid JSON payload received. Unknown name "${name}": Cannot bind query parameter. Field '${name}' could not be found in request message.`,
      },
      {},
      'INVALID_ARGUMENT',
    ),
  driveIdRequiresDriveCorpora: () =>
    new DriveApiError(400, {
      domain: 'global',
      reason: 'teamDriveIdRequiresTeamDriveCorpora',
      message: 'The driveId parameter must be specified if and only if corpora is set to drive.',
    }),
  includeItemsRequired: () =>
    new DriveApiError(403, {
      domain: 'global',
      reason: 'teamDriveIncludeItemsRequired',
      message:
        'The includeItemsFromAllDrives parameter must be set to true when driveId is specified or corpora contains drive or allDrives.',
      ...param('includeItemsFromAllDrives'),
    }),
  fileNotDownloadable: () =>
    new DriveApiError(403, {
      domain: 'global',
      reason: 'fileNotDownloadable',
      message:
        'Only files with binary content can be downloaded. Use Export with Docs Editors files.',
      ...param('alt'),
    }),
  cannotDownloadAbusiveFile: () =>
    new DriveApiError(403, {
      domain: 'global',
      reason: 'cannotDownloadAbusiveFile',
      message:
        'This file has been identified as malware or spam and cannot be downloaded. Set acknowledgeAbuse to true to download it anyway.',
      ...param('acknowledgeAbuse'),
    }),
  fileNotExportable: () =>
    new DriveApiError(403, {
      domain: 'global',
      reason: 'fileNotExportable',
      message: 'Export only supports Docs Editors files.',
    }),
  conversionNotSupported: () =>
    new DriveApiError(400, {
      domain: 'global',
      reason: 'badRequest',
      message: 'The requested conversion is not supported.',
      ...param('convertTo'),
    }),
  exportSizeLimitExceeded: () =>
    new DriveApiError(403, {
      domain: 'global',
      reason: 'exportSizeLimitExceeded',
      message: 'This file is too large to be exported.',
    }),
  rangeNotSatisfiable: (size: number) =>
    new DriveApiError(
      416,
      {
        domain: 'global',
        reason: 'requestedRangeNotSatisfiable',
        message: 'Request range not satisfiable',
      },
      { 'content-range': `bytes */${size}` },
    ),
  notImplemented: (what: string) =>
    new DriveApiError(501, {
      domain: 'global',
      reason: 'notImplemented',
      message: `The Google emulator does not implement ${what} (app/test/emulators/google/).`,
    }),
  // The faults a test can inject (faults.ts), worded as Drive words them.
  userRateLimitExceeded: () =>
    new DriveApiError(403, {
      domain: 'usageLimits',
      reason: 'userRateLimitExceeded',
      message: 'User Rate Limit Exceeded',
    }),
  rateLimitExceeded: (status: 403 | 429) =>
    new DriveApiError(status, {
      domain: 'usageLimits',
      reason: 'rateLimitExceeded',
      message: 'Rate Limit Exceeded',
    }),
  dailyLimitExceeded: () =>
    new DriveApiError(403, {
      domain: 'usageLimits',
      reason: 'dailyLimitExceeded',
      message: 'Daily Limit Exceeded',
    }),
  downloadQuotaExceeded: () =>
    new DriveApiError(403, {
      domain: 'global',
      reason: 'downloadQuotaExceeded',
      message: 'The download quota for this file has been exceeded.',
    }),
  backendError: () =>
    new DriveApiError(500, { domain: 'global', reason: 'backendError', message: 'Backend Error' }),
  serviceUnavailable: () =>
    new DriveApiError(
      503,
      {
        domain: 'global',
        reason: 'backendError',
        message: 'The service is currently unavailable.',
      },
      {},
      'UNAVAILABLE',
    ),
};

/** An error of the OAuth token endpoint: RFC 6749 section 5.2, with Google's descriptions. */
export class OAuthError extends Error {
  constructor(
    readonly status: number,
    readonly error: string,
    readonly description: string,
  ) {
    super(`${error}: ${description}`);
  }

  body(): unknown {
    return { error: this.error, error_description: this.description };
  }
}

/**
 * What Google's consent screen shows instead of redirecting (an unknown client, a redirect URI
 * that is not registered, a malformed request). Thrown by `google.consent()`.
 */
export class ConsentError extends Error {
  constructor(
    readonly error: string,
    readonly description: string,
  ) {
    super(`Google would show "Error: ${error}" on its consent page: ${description}`);
    this.name = 'ConsentError';
  }
}
