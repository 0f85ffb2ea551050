-- Agents by their state column (free text in the schema, so the label set is capped at
-- max_label_values states, the most common first).
SELECT state, count(*) AS bgdb_agents
FROM agents
GROUP BY state
ORDER BY count(*) DESC, state
LIMIT %(max_label_values)s
