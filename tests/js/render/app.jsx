// One page that renders an input schema with rjsf or JSON Forms and reports what a designer would see.
import React from "react";
import { createRoot } from "react-dom/client";
import { flushSync } from "react-dom";
import Form from "@rjsf/core";
import { customizeValidator } from "@rjsf/validator-ajv8";
import Ajv2020 from "ajv/dist/2020.js";
import addFormats from "ajv-formats";
import { JsonForms } from "@jsonforms/react";
import { vanillaCells, vanillaRenderers } from "@jsonforms/vanilla-renderers";
import { jsonTextRenderer, objectRenderer } from "./json_text.jsx";

const jsonformsRenderers = [...vanillaRenderers, jsonTextRenderer, objectRenderer];

const vocabulary = window.VOCABULARY;

function withVocabulary(ajv) {
  addFormats(ajv);
  ajv.addFormat("password", true);
  for (const [keyword, metaSchema] of Object.entries(vocabulary.properties)) ajv.addKeyword({ keyword, metaSchema });
  return ajv;
}

// rjsf: validator-ajv8 on Ajv2020 with ajv-formats, told our keywords and the password format
const rjsfValidator = customizeValidator({ AjvClass: Ajv2020, customFormats: { password: () => true } });
withVocabularyKeywords(rjsfValidator.ajv);
function withVocabularyKeywords(ajv) {
  for (const [keyword, metaSchema] of Object.entries(vocabulary.properties)) {
    if (!ajv.getKeyword(keyword)) ajv.addKeyword({ keyword, metaSchema });
  }
}
// JSON Forms: its default Ajv cannot load 2020-12, so it gets an Ajv2020 (as a runtime would give it)
const jsonformsAjv = withVocabulary(new Ajv2020({ allErrors: true, verbose: true, strict: false }));

// What a runtime's rjsf ObjectFieldTemplate does with our uiSchema's ui:options.groups: a section
// per x-group, advanced ones collapsed (rjsf's default template draws one flat list).
function GroupedObject(props) {
  const groups = (props.uiSchema && props.uiSchema["ui:options"] && props.uiSchema["ui:options"].groups) || {};
  const grouped = new Set(Object.values(groups).flatMap((g) => g.fields));
  const byName = Object.fromEntries(props.properties.map((p) => [p.name, p]));
  return (
    <fieldset id={props.idSchema && props.idSchema.$id}>
      {props.title ? <legend>{props.title}</legend> : null}
      {props.description ? <p className="field-description">{props.description}</p> : null}
      {props.properties.filter((p) => !grouped.has(p.name)).map((p) => <div key={p.name}>{p.content}</div>)}
      {Object.entries(groups).map(([label, group]) => (
        <details key={label} className="group" open={!group.collapsed}>
          <summary>{label}</summary>
          {group.fields.filter((n) => byName[n]).map((n) => <div key={n}>{byName[n].content}</div>)}
        </details>
      ))}
      {props.canExpand && props.canExpand() ? null : null}
    </fieldset>
  );
}

const container = document.getElementById("form");
let root = null;

function settle() {
  return new Promise((resolve) => setTimeout(resolve, 30));
}

function boxes() {
  const text = container.innerText;
  return {
    unsupported: container.querySelectorAll(".unsupported-field").length,
    noRenderer: (text.match(/No applicable (renderer|cell) found/g) || []).length,
  };
}

window.renderForm = async ({ renderer, schema, uiSchema, data, title }) => {
  if (root) root.unmount();
  container.innerHTML = "";
  root = createRoot(container);
  const heading = <h2 className="form-title">{title}</h2>;
  if (renderer === "rjsf") {
    const ref = React.createRef();
    flushSync(() =>
      root.render(
        <div className="rjsf-form">
          <Form ref={ref} schema={schema} uiSchema={uiSchema || {}}
            templates={uiSchema ? { ObjectFieldTemplate: GroupedObject } : undefined} formData={data} validator={rjsfValidator} showErrorList="top" />
        </div>,
      ),
    );
    await settle();
    const found = boxes();
    let errors = [];
    if (data !== undefined) {
      const valid = ref.current.validateForm();
      await settle();
      if (!valid) errors = (ref.current.state.errors || []).map((e) => `${e.property} ${e.message}`);
    }
    return { ...found, errors };
  }
  let latest = [];
  flushSync(() =>
    root.render(
      <div className="jsonforms-form">
        {heading}
        <JsonForms
          schema={schema}
          uischema={uiSchema || undefined}
          data={data === undefined ? {} : data}
          renderers={jsonformsRenderers}
          cells={vanillaCells}
          ajv={jsonformsAjv}
          validationMode="ValidateAndShow"
          onChange={({ errors }) => {
            latest = errors || [];
          }}
        />
      </div>,
    ),
  );
  await settle();
  const found = boxes();
  const errors = data === undefined ? [] : latest.map((e) => `${e.instancePath} ${e.message}`);
  return { ...found, errors };
};

window.ready = true;
