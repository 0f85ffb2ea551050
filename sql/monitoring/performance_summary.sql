-- Performance metrics of the last hour, per agent and metric.
-- Index-backed: range scan of the (timestamp, id) primary key of the current partition(s).
SELECT pm.agent_id,
       pm.metric_name,
       max(pm.unit) AS unit,
       count(*) AS sample_count,
       avg(pm.value) AS avg_value,
       min(pm.value) AS min_value,
       max(pm.value) AS max_value,
       percentile_cont(0.95) WITHIN GROUP (ORDER BY pm.value) AS p95_value,
       max(pm.timestamp) AS last_sample_at
FROM performance_metrics pm
WHERE pm.timestamp > now() - interval '1 hour'
GROUP BY pm.agent_id, pm.metric_name
ORDER BY pm.agent_id, pm.metric_name;
