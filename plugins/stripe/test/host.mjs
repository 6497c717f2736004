// The host's imports for unit tests: `log` records its lines so tests can check them.
export const logged = [];

export function log(level, message) {
  logged.push([level, message]);
}

export function verifyHmacSha256() {
  throw new Error("the Stripe plugin leaves signatures to the host");
}

export function signHmacSha256() {
  throw new Error("the Stripe plugin leaves signatures to the host");
}
