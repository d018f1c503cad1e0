// Segment's Node SDK (@segment/analytics-node) or RudderStack's (@rudderstack/rudder-sdk-node),
// unchanged, sends a list of calls given by the test (tests/realtime/test_segment_marts.py) to a
// running `ottp serve`, in order, then flushes.
// Usage: node send_calls.mjs '{"sdk": "segment"|"rudderstack", "host": ..., "writeKey": ...,
//                              "calls": [{"type": "track"|"page"|"identify", ...message}]}'
// A call's `timestamp` is an ISO string (made a Date here). Exits 1 if the SDK reports an error.
import { Analytics } from '@segment/analytics-node'
import RudderAnalytics from '@rudderstack/rudder-sdk-node'

const args = JSON.parse(process.argv[2])
const errors = []

function segmentClient() {
  const client = new Analytics({
    writeKey: args.writeKey, host: args.host, flushAt: 100, flushInterval: 200, maxRetries: 1,
  })
  client.on('error', (err) => errors.push(String(err.reason ?? err.code ?? err)))
  return { send: client, close: () => client.closeAndFlush({ timeout: 20000 }) }
}

function rudderstackClient() {
  const client = new RudderAnalytics(args.writeKey, {
    dataPlaneUrl: args.host, flushAt: 100, flushInterval: 200, retryCount: 0, logLevel: 'error',
    errorHandler: (err) => errors.push(String(err)),
  })
  return { send: client, close: () => client.flush() }
}

const { send: analytics, close } = args.sdk === 'rudderstack' ? rudderstackClient() : segmentClient()
for (const { type, timestamp, ...message } of args.calls) {
  if (!['track', 'page', 'screen', 'identify'].includes(type)) throw new Error(`unknown call ${type}`)
  analytics[type]({ ...message, timestamp: new Date(timestamp) })
}
await close()
if (errors.length) {
  console.error(JSON.stringify(errors))
  process.exit(1)
}
