"""Query languages compiled to SQL: OData $filter/$orderby/$expand, FetchXML, $apply aggregates."""
