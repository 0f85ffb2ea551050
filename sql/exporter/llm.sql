-- LLM usage by model over the last 5 minutes, as gauges (a sliding 5-minute sum, not counters:
-- a counter would need a sum over the whole table at every scrape). Tokens per hour:
-- avg_over_time(bgdb_llm_tokens_5m[1h]) * 12. Cost is in the unit of the cost column.
-- Tokens: the seed's tokens_used, or input + output where a writer left it NULL; the input/output
-- split is ours (0 for rows written by the seed's code, which only knows tokens_used).
-- model and cost may be NULL (the seed allows it): the model label is then 'unknown', and a NULL
-- cost counts as 0. At most max_label_values models, the busiest first. Range scan of the
-- timestamp index.
SELECT
    coalesce(model, 'unknown') AS model,
    count(*) AS bgdb_llm_calls_5m,
    coalesce(sum(coalesce(tokens_used, coalesce(tokens_input, 0) + coalesce(tokens_output, 0))),
             0) AS bgdb_llm_tokens_5m,
    coalesce(sum(tokens_input), 0) AS bgdb_llm_input_tokens_5m,
    coalesce(sum(tokens_output), 0) AS bgdb_llm_output_tokens_5m,
    coalesce(sum(cost), 0)::float8 AS bgdb_llm_cost_5m
FROM llm_conversations
WHERE timestamp > now() - interval '5 minutes'
GROUP BY 1
ORDER BY count(*) DESC, 1
LIMIT %(max_label_values)s
