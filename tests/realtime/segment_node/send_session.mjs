// Segment's Node SDK (@segment/analytics-node) or RudderStack's (@rudderstack/rudder-sdk-node),
// unchanged, sends the scripted viewing session of tests/realtime/test_segment_api.py to a
// running `ottp serve`.
// Usage: node send_session.mjs '{"sdk": "segment"|"rudderstack", "host": ..., "writeKey": ...,
//                                "start": ISO, "playbackId": ..., "userId": ..., ...}'
// Exits 1 if the SDK reports an error (a refused batch, a failed request).
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
const start = Date.parse(args.start)
const at = (seconds) => new Date(start + seconds * 1000)
const ids = {
  userId: args.userId,
  anonymousId: args.deviceId,
  context: { device: { type: 'android' }, app: { version: '5.12.1' }, location: { country: 'FR' } },
}
const title = args.titleId

analytics.identify({ ...ids, traits: { plan: 'premium' }, timestamp: at(0) })
analytics.page({ ...ids, name: 'Home', timestamp: at(1) })
analytics.track({
  ...ids, event: 'Title Clicked', timestamp: at(5),
  properties: { content_asset_id: title, rail: 'trending', rank: 2 },
})
analytics.page({ ...ids, name: 'Title', properties: { content_asset_id: title }, timestamp: at(6) })
const video = {
  session_id: args.playbackId, content_asset_id: title, total_length: 300,
  livestream: false, video_player: 'exoplayer',
}
const t0 = 10
analytics.track({ ...ids, event: 'Video Playback Started', properties: { ...video, position: 0 }, timestamp: at(t0) })
for (const position of [60, 120, 180, 240]) {
  analytics.track({
    ...ids, event: 'Video Content Playing', properties: { ...video, position }, timestamp: at(t0 + position),
  })
}
analytics.track({
  ...ids, event: 'Video Playback Completed', properties: { ...video, position: 300 }, timestamp: at(t0 + 300),
})
analytics.track({
  ...ids, event: 'Title Rated', properties: { content_asset_id: title, rating: 5 }, timestamp: at(t0 + 310),
})

await close()
if (errors.length) {
  console.error(JSON.stringify(errors))
  process.exit(1)
}
