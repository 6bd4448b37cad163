// Shared with the dispatcher, whose log follower vouches for service keys the same way.
export { serviceKeysFrom } from '@rebootless/kafka';
