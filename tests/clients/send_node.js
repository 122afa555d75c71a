// Send track calls with Segment's Node library (@segment/analytics-node).
// usage: node send_node.js CLIENTS_DIR HOST WRITE_KEY COUNT PREFIX
// Prints "error ..." on stderr for every failure the library reports; exits 0.
const [clients, host, writeKey, count, prefix] = process.argv.slice(2);
const { Analytics } = require(`${clients}/node_modules/@segment/analytics-node`);

const analytics = new Analytics({ writeKey, host, flushAt: 100, flushInterval: 200, maxRetries: 1 });
analytics.on('error', (error) => console.error('error', error && (error.reason || error.message || error.code || error)));

(async () => {
  for (let i = 0; i < Number(count); i++) {
    analytics.track({
      userId: `user-${i}`,
      event: 'Order Completed',
      messageId: `${prefix}-${i}`,
      timestamp: new Date(),
      properties: { revenue: 10 + i, currency: 'USD' },
      context: {
        userAgent: 'Mozilla/5.0 (X11; Linux x86_64)',
        ip: '203.0.113.7',
        page: { url: 'https://shop.example/checkout' },
        traits: { email: `buyer${i}@example.com` },
      },
    });
  }
  await analytics.closeAndFlush({ timeout: 20000 });
})();
