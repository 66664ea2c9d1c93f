/**
 * The extension's logger: one `LogOutputChannel` ("Keel") shared with the language client,
 * which writes its own messages and the LSP trace into the same channel, so a user who opens
 * "Keel: Show Output" sees one ordered story. With `CI` set, lines are mirrored to the console
 * (the extension host's log), which is where a headless test run can read them.
 */

/** The part of `vscode.LogOutputChannel` the logger uses; a plain object in unit tests. */
export interface LogSink {
  trace(message: string): void;
  debug(message: string): void;
  info(message: string): void;
  warn(message: string): void;
  error(message: string | Error): void;
}

/** Levelled logging; `error` accepts anything thrown. */
export interface Logger {
  trace(message: string): void;
  debug(message: string): void;
  info(message: string): void;
  warn(message: string): void;
  error(message: string, error?: unknown): void;
}

/** Renders anything thrown (an Error, an LSP ResponseError, a string) as one line. */
export function describeError(error: unknown): string {
  if (error instanceof Error) {
    return error.message;
  }
  if (typeof error === 'object' && error !== null && 'message' in error && typeof error.message === 'string') {
    return error.message;
  }
  return typeof error === 'string' ? error : JSON.stringify(error);
}

/** A logger over a channel, mirroring to the console when `mirror` is true. */
export function createLogger(sink: LogSink, mirror: boolean): Logger {
  const echo = (level: string, message: string): void => {
    if (mirror) {
      console.warn(`[keel ${level}] ${message}`);
    }
  };
  return {
    trace: (message) => {
      sink.trace(message);
    },
    debug: (message) => {
      sink.debug(message);
      echo('debug', message);
    },
    info: (message) => {
      sink.info(message);
      echo('info', message);
    },
    warn: (message) => {
      sink.warn(message);
      echo('warn', message);
    },
    error: (message, error) => {
      const line = error === undefined ? message : `${message}: ${describeError(error)}`;
      sink.error(line);
      echo('error', line);
    },
  };
}
