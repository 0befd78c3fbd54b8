// Preloaded into a daemon under test (NODE_OPTIONS=--import): SIGUSR2 makes the process throw
// an exception nobody catches, SIGWINCH leaves a rejected promise unhandled — the kind of bug
// the daemon's last-resort handler must survive.
process.on('SIGUSR2', () => {
  setImmediate(() => {
    throw new Error('injected fault');
  });
});
process.on('SIGWINCH', () => {
  void Promise.reject(new Error('injected rejection'));
});
