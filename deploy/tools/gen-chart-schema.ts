/**
 * Writes helm/rtmp-goaway-proxy/values.schema.json to stdout.
 *
 *   node --import tsx deploy/tools/gen-chart-schema.ts > helm/rtmp-goaway-proxy/values.schema.json
 *
 * The `config` part comes from the proxy's zod schema (settingDocs() of src/config.ts, the same
 * source as docs/configuration.md), so a chart value exists exactly when the setting does; the
 * chart's own keys are described below. test/deploy/helm.test.ts asserts the committed file
 * equals this output, and validates values.yaml and the ci/ values against it with ajv.
 */
import { settingDocs } from '../../src/config.js';

type Schema = Record<string, unknown>;

const obj = (properties: Record<string, Schema>, extra: Schema = {}): Schema => ({ type: 'object', additionalProperties: false, properties, ...extra });
const str = (description: string, extra: Schema = {}): Schema => ({ type: 'string', description, ...extra });
const int = (description: string, extra: Schema = {}): Schema => ({ type: 'integer', description, ...extra });
const bool = (description: string): Schema => ({ type: 'boolean', description });
/** Kubernetes objects passed through as they are (validated by the API server, not here). */
const k8sObject = (description: string): Schema => ({ type: 'object', description });
const k8sList = (description: string): Schema => ({ type: 'array', description, items: { type: 'object' } });
const stringList = (description: string): Schema => ({ type: 'array', description, items: { type: 'string' } });
const stringMap = (description: string): Schema => ({ type: 'object', description, additionalProperties: { type: 'string' } });

const DURATION = '^\\s*\\d+(\\.\\d+)?\\s*([mM][sS]|[sSmMhH])?\\s*$';
const SIZE = '^\\s*\\d+(\\.\\d+)?\\s*([kKmMgGtT]([iI]?[bB])?|[bB])?\\s*$';
const BACKEND_NAME = '^[A-Za-z0-9._-]{1,63}$';

/** JSON schema of one setting, from its documented type. */
function leaf(type: string, description: string): Schema {
  if (type.includes(' | ')) return { type: 'string', enum: type.split(' | '), description };
  switch (type) {
    case 'duration':
      return {
        description,
        oneOf: [
          { type: 'integer', minimum: 0 },
          { type: 'string', pattern: DURATION },
        ],
      };
    case 'size':
      return {
        description,
        oneOf: [
          { type: 'integer', minimum: 0 },
          { type: 'string', pattern: SIZE },
        ],
      };
    case 'integer':
      return { type: 'integer', description };
    case 'number':
      return { type: 'number', description };
    case 'boolean':
      return { type: 'boolean', description };
    case 'host:port':
      return { type: 'string', pattern: '^(\\[[^\\]]+\\]|[^:\\s]*):\\d{1,5}$|^$', description };
    case 'URL':
      return { type: 'string', description };
    case 'string':
      return { type: 'string', minLength: 1, description };
    case 'list of name=host:port':
      return {
        type: 'array',
        description: `${description} In the chart: mappings {name, host, port, maxSessions?, weight?} or "name=host:port" strings.`,
        items: {
          oneOf: [
            { type: 'string', pattern: '^([A-Za-z0-9._-]{1,63}=)?(\\[[^\\]]+\\]|[^:\\s]+):\\d{1,5}$' },
            obj(
              {
                name: { type: 'string', pattern: BACKEND_NAME },
                host: { type: 'string', minLength: 1 },
                port: { type: 'integer', minimum: 1, maximum: 65535 },
                maxSessions: { type: 'integer', minimum: 0 },
                weight: { type: 'integer', minimum: 0 },
              },
              { required: ['name', 'host', 'port'] },
            ),
          ],
        },
      };
    case 'mapping (JSON in env/flag)':
      return { type: ['object', 'string', 'null'], description: `${description} In the chart: the mapping itself (passed to the proxy as JSON).` };
    default:
      throw new Error(`gen-chart-schema: no JSON schema for setting type "${type}"; teach leaf() about it`);
  }
}

/** The `config` object: nested groups exactly as the YAML paths, every group and leaf strict. */
export function configSchema(): Schema {
  const root: Schema = obj({}, { description: 'Proxy settings by their YAML path (docs/configuration.md), written to the config file the proxy watches.' });
  for (const d of settingDocs()) {
    const parts = d.path.split('.');
    let node = root;
    for (const p of parts.slice(0, -1)) {
      const props = node['properties'] as Record<string, Schema>;
      props[p] ??= obj({});
      node = props[p]!;
    }
    (node['properties'] as Record<string, Schema>)[parts.at(-1)!] = leaf(d.type, `${d.description} (env ${d.env}, flag ${d.flag}; proxy default ${d.default})`);
  }
  return root;
}

const image = (what: string, withDigest: boolean): Schema =>
  obj(
    {
      repository: str(`Repository of the ${what} image.`, { minLength: 1 }),
      tag: str('Image tag; empty means the chart appVersion.'),
      ...(withDigest ? { digest: str('Image digest (sha256:…); wins over the tag.', { pattern: '^(sha256:[0-9a-f]{64})?$' }) } : {}),
      pullPolicy: { type: 'string', enum: ['Always', 'IfNotPresent', 'Never'] },
    },
    { required: ['repository'] },
  );

const probe = (what: string): Schema =>
  obj({
    periodSeconds: int(`${what}: seconds between probes.`, { minimum: 1 }),
    timeoutSeconds: int(`${what}: probe timeout.`, { minimum: 1 }),
    failureThreshold: int(`${what}: failures before acting.`, { minimum: 1 }),
    successThreshold: int(`${what}: successes before passing.`, { minimum: 1 }),
    initialDelaySeconds: int(`${what}: delay before the first probe.`, { minimum: 0 }),
  });

const resources = (what: string): Schema =>
  obj({ requests: stringMapOrNumber(`${what} requests.`), limits: stringMapOrNumber(`${what} limits.`), claims: k8sList('Resource claims.') });

function stringMapOrNumber(description: string): Schema {
  return { type: 'object', description, additionalProperties: { type: ['string', 'number'] } };
}

/**
 * Combinations that render but cannot work, refused before anything is deployed (the templates
 * check them again, with the numbers: the heap against the memory limit, the grace periods).
 */
function crossChecks(): Schema[] {
  return [
    {
      $comment: 'A load balancer that sends PROXY protocol needs a proxy that reads it: otherwise every handshake fails.',
      if: {
        required: ['proxyProtocol'],
        properties: { proxyProtocol: { required: ['serviceAnnotations'], properties: { serviceAnnotations: { minProperties: 1 } } } },
      },
      then: { properties: { config: { required: ['acceptProxyProtocol'], properties: { acceptProxyProtocol: { enum: ['optional', 'required'] } } } } },
    },
    {
      $comment: 'A TLS Secret is only used by an RTMPS listener.',
      if: { required: ['tls'], properties: { tls: { required: ['secretName'], properties: { secretName: { minLength: 1 } } } } },
      then: { properties: { config: { required: ['tls'], properties: { tls: { required: ['listen'], properties: { listen: { minLength: 1 } } } } } } },
    },
    {
      $comment: 'The ingest pool is part of the l4 tier and drains itself through Redis.',
      if: { required: ['ingestPool'], properties: { ingestPool: { required: ['enabled'], properties: { enabled: { const: true } } } } },
      then: { properties: { mode: { const: 'l4' }, redis: { required: ['existingSecret'], properties: { existingSecret: { minLength: 1 } } } } },
    },
  ];
}

export function valuesSchema(): Schema {
  return {
    $schema: 'http://json-schema.org/draft-07/schema#',
    $comment: 'Generated by deploy/tools/gen-chart-schema.ts (config: from src/config.ts). Do not edit by hand.',
    title: 'rtmp-goaway-proxy chart values',
    ...obj(
      {
        mode: {
          type: 'string',
          enum: ['sidecar', 'l4'],
          description: 'sidecar: nginx-rtmp with the proxy in each pod; l4: a tier of proxies in front of config.backends.',
        },
        nameOverride: str('Overrides the chart name in object names.'),
        fullnameOverride: str('Overrides the full object name.'),
        replicaCount: int('Pods of the Deployment.', { minimum: 0 }),
        image: image('proxy', true),
        imagePullSecrets: k8sList('Secrets to pull the images.'),
        config: configSchema(),
        redis: obj({
          existingSecret: str('Secret holding the Redis URL (becomes RTMP_GOAWAY_REDIS_URL).'),
          secretKey: str('Key of the URL in that Secret.', { minLength: 1 }),
        }),
        ingest: obj({
          image: image('nginx-rtmp', false),
          args: stringList('nginx arguments.'),
          backendName: { type: 'string', pattern: BACKEND_NAME, description: 'Backend name of the local nginx in the proxy.' },
          port: int('Loopback port nginx listens on.', { minimum: 1, maximum: 65535 }),
          resources: resources('nginx'),
          securityContext: k8sObject('Security context of the nginx container.'),
          recordings: obj({
            existingClaim: str('PersistentVolumeClaim for /var/rec; empty means an emptyDir.'),
            sizeLimit: { type: ['string', 'integer'], description: 'Size limit of the emptyDir.' },
          }),
          extraVolumeMounts: k8sList('Extra volume mounts of the nginx container.'),
          probes: obj({ readiness: probe('nginx readiness'), liveness: probe('nginx liveness') }),
        }),
        shutdown: obj({
          preStopSleepSeconds: int('Seconds the proxy waits in preStop before SIGTERM.', { minimum: 0 }),
          terminationGracePeriodSeconds: int('Pod terminationGracePeriodSeconds; 0 means derived from the drain timing.', { minimum: 0 }),
        }),
        service: obj({
          type: { type: 'string', enum: ['LoadBalancer', 'NodePort', 'ClusterIP'] },
          port: int('Service port for RTMP.', { minimum: 1, maximum: 65535 }),
          externalTrafficPolicy: { type: 'string', enum: ['Local', 'Cluster'] },
          loadBalancerSourceRanges: stringList('Source ranges allowed through the load balancer.'),
          annotations: stringMap('Annotations of the Service.'),
          labels: stringMap('Extra labels of the Service.'),
        }),
        proxyProtocol: obj({
          serviceAnnotations: stringMap(
            'Annotations merged into the Service that make the load balancer send PROXY protocol (needs config.acceptProxyProtocol).',
          ),
        }),
        tls: obj({
          secretName: str('kubernetes.io/tls Secret mounted read-only at mountPath (needs config.tls.listen).'),
          mountPath: str('Mount path of the TLS Secret.', { pattern: '^/' }),
          servicePort: int('Service port for RTMPS.', { minimum: 1, maximum: 65535 }),
        }),
        hotReloadedSettings: {
          type: 'array',
          description: 'Top-level config keys the proxy applies from its watched file; the others roll the pods when changed.',
          items: { type: 'string', enum: [...new Set(settingDocs().map((d) => d.path.split('.')[0]!))] },
        },
        adminToken: obj({
          existingSecret: str('Secret holding the admin token; empty: the chart creates one with a random token.'),
          secretKey: str('Key of the token in the Secret.', { minLength: 1 }),
          mountPath: str('Directory the token Secret is mounted at.', { pattern: '^/' }),
        }),
        nodeOptions: str(
          'NODE_OPTIONS of the proxy (the entry point adds the runtime settings that are missing); a --max-old-space-size must fit resources.limits.memory.',
        ),
        ingestPool: obj({
          enabled: bool('Run a pool of nginx-rtmp servers (l4 mode), discovered through DNS, each draining itself before it stops.'),
          replicas: int('Pods of the ingest StatefulSet.', { minimum: 0 }),
          clusterDomain: str('Cluster DNS domain.', { minLength: 1 }),
          args: stringList('nginx arguments.'),
          port: int('RTMP port of nginx.', { minimum: 1, maximum: 65535 }),
          drainDeadline: leaf('duration', 'Deadline of the preStop drain.'),
          terminationGracePeriodSeconds: int('Pod terminationGracePeriodSeconds; 0 means derived from drainDeadline.', { minimum: 0 }),
          resources: resources('nginx'),
          drainResources: resources('drain container'),
          recordings: obj({
            size: { type: ['string', 'integer'], description: "Size of each pod's recordings claim." },
            storageClassName: str('StorageClass of the claims.'),
          }),
        }),
        autoscaling: obj({
          enabled: bool('Create a HorizontalPodAutoscaler.'),
          minReplicas: int('Fewest replicas.', { minimum: 1 }),
          maxReplicas: int('Most replicas.', { minimum: 1 }),
          targetCPUUtilizationPercentage: int('Target average CPU utilization.', { minimum: 1, maximum: 100 }),
          scaleDownStabilizationSeconds: int('Seconds of lower load before scaling down.', { minimum: 0 }),
        }),
        networkPolicy: obj({
          enabled: bool('Create a NetworkPolicy.'),
          monitoringNamespaceSelector: k8sObject('Namespaces whose pods may reach the admin port.'),
          adminClientPodSelector: k8sObject('Pods of the namespace that may reach the admin port.'),
        }),
        prometheusRule: obj({
          enabled: bool('Create a PrometheusRule with the alerts of docs/deploy.md.'),
          labels: stringMap('Extra labels of the PrometheusRule.'),
          alertLabels: stringMap('Labels added to every alert.'),
          descriptorsRatio: {
            type: 'number',
            exclusiveMinimum: 0,
            maximum: 1,
            description: 'Open / max descriptors ratio that fires RtmpGoawayDescriptorsNearLimit.',
          },
        }),
        probes: obj({ readiness: probe('GET /readyz'), liveness: probe('GET /healthz') }),
        resources: resources('proxy'),
        podSecurityContext: k8sObject('Pod security context.'),
        securityContext: k8sObject('Security context of the proxy container.'),
        podDisruptionBudget: obj({
          enabled: bool('Create a PodDisruptionBudget.'),
          maxUnavailable: { type: ['integer', 'string'], description: 'maxUnavailable (number or percentage).' },
        }),
        serviceMonitor: obj({
          enabled: bool('Create a ServiceMonitor (and a headless metrics Service).'),
          labels: stringMap('Extra labels of the ServiceMonitor.'),
          interval: str('Scrape interval.', { pattern: '^\\d+(ms|s|m|h)$' }),
          scrapeTimeout: str('Scrape timeout.', { pattern: '^\\d+(ms|s|m|h)$' }),
        }),
        extraEnv: {
          type: 'array',
          description: 'Extra environment entries of the proxy container (not NODE_OPTIONS: use nodeOptions).',
          items: { type: 'object', not: { required: ['name'], properties: { name: { const: 'NODE_OPTIONS' } } } },
        },
        extraEnvFrom: k8sList('Extra envFrom sources of the proxy container.'),
        extraArgs: stringList('Arguments appended after `serve`.'),
        extraVolumes: k8sList('Extra volumes of the pod.'),
        extraVolumeMounts: k8sList('Extra volume mounts of the proxy container.'),
        podAnnotations: stringMap('Annotations of the pods.'),
        podLabels: stringMap('Extra labels of the pods.'),
        priorityClassName: str('Pod priorityClassName.'),
        nodeSelector: stringMap('Node selector.'),
        tolerations: k8sList('Tolerations.'),
        affinity: k8sObject('Affinity.'),
        topologySpreadConstraints: k8sList('Topology spread constraints; empty means spread over nodes.'),
      },
      { required: ['mode', 'image', 'config'], allOf: crossChecks() },
    ),
  };
}

const isMain = process.argv[1] !== undefined && import.meta.url === new URL(`file://${process.argv[1]}`).href;
if (isMain) process.stdout.write(`${JSON.stringify(valuesSchema(), null, 2)}\n`);
