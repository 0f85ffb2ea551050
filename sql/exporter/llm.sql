-- LLM usage by model over the last 5 minutes, as gauges (a sliding 5-minute sum, not counters:
-- a counter would need a sum over the whole table at every scrape). Tokens per hour:
-- avg_over_time(bgdb_llm_input_tokens_5m[1h]) * 12. Cost is in the unit of the cost column.
-- At most max_label_values models, the busiest first. Range scan of the timestamp index.
SELECT
    model,
    count(*) AS bgdb_llm_calls_5m,
    sum(tokens_input) AS bgdb_llm_input_tokens_5m,
    sum(tokens_output) AS bgdb_llm_output_tokens_5m,
    sum(cost)::float8 AS bgdb_llm_cost_5m
FROM llm_conversations
WHERE timestamp > now() - interval '5 minutes'
GROUP BY model
ORDER BY count(*) DESC, model
LIMIT %(max_label_values)s
