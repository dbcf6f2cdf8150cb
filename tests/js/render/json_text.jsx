// The one renderer a JSON Forms runtime adds to the vanilla set for our forms: free JSON values
// (x-widget code with x-language json, x-widget any: objects without properties, lists of free
// objects, type lists) as a JSON text area. rjsf needs nothing of the kind.
import React from "react";
import { rankWith, schemaMatches } from "@jsonforms/core";
import { withJsonFormsControlProps } from "@jsonforms/react";

const SCALARS = ["string", "number", "integer", "boolean"];

function typesOf(schema) {
  const types = Array.isArray(schema.type) ? schema.type : schema.type ? [schema.type] : [];
  return types.filter((t) => t !== "null");
}

export function isFreeJson(schema) {
  if (!schema || schema.enum || schema.oneOf) return false;
  const types = typesOf(schema);
  if (types.length > 1 || schema.anyOf) return true;
  if (types[0] === "object") return !schema.properties;
  if (types[0] === "array") {
    const items = schema.items || {};
    return !(items.properties || SCALARS.includes(items.type) || items.enum);
  }
  return false;
}

function shown(data) {
  if (data === undefined || data === null) return "";
  return typeof data === "string" ? data : JSON.stringify(data, null, 2);
}

function JsonText({ data, handleChange, path, label, schema, errors, id, required }) {
  const [text, setText] = React.useState(shown(data));
  const allowsText = (Array.isArray(schema.type) ? schema.type : [schema.type]).includes("string");
  const change = (event) => {
    const value = event.target.value;
    setText(value);
    if (value.trim() === "") return handleChange(path, undefined);
    try {
      handleChange(path, JSON.parse(value));
    } catch {
      handleChange(path, allowsText ? value : value); // invalid JSON stays text: validation names it
    }
  };
  return (
    <div className="control json-text">
      <label htmlFor={id}>{label}{required ? "*" : ""}</label>
      <textarea id={id} rows={4} value={text} onChange={change} spellCheck={false} />
      {schema.description ? <div className="input-description">{schema.description}</div> : null}
      {errors ? <div className="validation">{errors}</div> : null}
    </div>
  );
}

export const jsonTextRenderer = {
  tester: rankWith(5, schemaMatches((schema) => isFreeJson(schema))),
  renderer: withJsonFormsControlProps(JsonText),
};

// Vanilla JSON Forms has no renderer for a nested object with properties ({table, id}); this is
// the usual one (as in the Material set): its fields as a group.
import { Generate, findUISchema, isObjectControl } from "@jsonforms/core";
import { JsonFormsDispatch, withJsonFormsDetailProps } from "@jsonforms/react";

function ObjectGroup({ renderers, cells, uischemas, schema, label, path, visible, enabled, uischema, rootSchema }) {
  const detail = findUISchema(uischemas, schema, uischema.scope, path,
    () => Generate.uiSchema(schema, "Group", undefined, rootSchema), uischema, rootSchema);
  const laidOut = { ...detail, label };
  return <JsonFormsDispatch visible={visible} enabled={enabled} schema={schema} uischema={laidOut} path={path}
    renderers={renderers} cells={cells} />;
}

export const objectRenderer = {
  tester: rankWith(2, isObjectControl),
  renderer: withJsonFormsDetailProps(ObjectGroup),
};
