/**
 * Imported first by cli.ts, so that it runs before the other modules load.
 *
 * Node answers SIGUSR1 by starting its inspector on 127.0.0.1:9229, which
 * asks for no authentication: any local user could then run code inside
 * walhub, with its host keys and its read access to the archive. walhub
 * itself is sent SIGUSR1 to reopen its audit log (logrotate), and that can
 * come while it is still starting. Any listener takes the signal from the
 * inspector for the life of the process; `walhub serve` adds the one that
 * reopens the log. What remains is Node's own start, before any module runs.
 */
process.on('SIGUSR1', () => undefined);
