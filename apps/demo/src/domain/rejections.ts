/** A command the decider refuses by its rules: the caller gets this, nothing is appended. */
export class CommandRejected extends Error {
  override name = 'CommandRejected';
}
