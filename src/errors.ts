/** Stable error codes; the HTTP API returns them as `code`. */
export type NotifyErrorCode =
  | 'NOTIFY_ERR_CONFIG'
  | 'NOTIFY_ERR_INVALID_MESSAGE'
  | 'NOTIFY_ERR_INVALID_JSON'
  | 'NOTIFY_ERR_LINE_TOO_LONG'
  | 'NOTIFY_ERR_BODY_TOO_LARGE'
  | 'NOTIFY_ERR_UNAUTHORIZED'
  | 'NOTIFY_ERR_NOT_FOUND'
  | 'NOTIFY_ERR_METHOD'
  | 'NOTIFY_ERR_CLOSED'
  | 'NOTIFY_ERR_TIMEOUT'
  | 'NOTIFY_ERR_CONNECT'
  | 'NOTIFY_ERR_USAGE'
  | 'NOTIFY_ERR_INVALID_DEVICE'
  | 'NOTIFY_ERR_BAD_REQUEST'
  | 'NOTIFY_ERR_STORE'
  | 'NOTIFY_ERR_STATE_LOCKED'
  | 'NOTIFY_ERR_WS_AUTH'
  | 'NOTIFY_ERR_LIMIT'
  | 'NOTIFY_ERR_CROSS_ORIGIN'
  | 'NOTIFY_ERR_HOST'
  | 'NOTIFY_ERR_TLS_REQUIRED'
  | 'NOTIFY_ERR_INTERNAL';

/** An error with a stable `code`, and the HTTP status to answer it with where one applies. */
export class NotifyError extends Error {
  readonly code: NotifyErrorCode;
  readonly status: number | undefined;

  constructor(code: NotifyErrorCode, message: string, options: { status?: number; cause?: unknown } = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'NotifyError';
    this.code = code;
    this.status = options.status;
  }
}

/** The message of any thrown value, for reports and log lines. */
export function errorMessage(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

/**
 * What a failure of the store (SQLite, the cluster's Redis) becomes for whoever publishes:
 * NOTIFY_ERR_STORE, answered `error: store unavailable (...)` on the Text port and 503 on the
 * HTTP API, never `ok`. A NotifyError passes through as it is; `backend` names a store whose own
 * messages do not ("Connection is closed." is Redis's).
 */
export function storeError(err: unknown, backend?: 'redis'): NotifyError {
  if (err instanceof NotifyError) return err;
  return new NotifyError('NOTIFY_ERR_STORE', `store unavailable (${backend ? `${backend}: ` : ''}${errorMessage(err)})`, { status: 503, cause: err });
}
